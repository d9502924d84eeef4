//! Helpers shared by the integration tests.

use std::time::Duration;

use taper_python::Sandbox;
use tokio::sync::OnceCell;

/// A sandbox with test-sized limits, built once per test binary.
pub async fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceCell<Sandbox> = OnceCell::const_new();
    SANDBOX
        .get_or_init(|| async {
            Sandbox::builder()
                .wall_time_limit(Duration::from_secs(10))
                .cpu_time_limit(Duration::from_secs(5))
                .build()
                .await
                .expect("python3 is installed and the sandbox works on this machine")
        })
        .await
}
