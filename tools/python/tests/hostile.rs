//! Code that tries to hurt the host. Each test checks that the host is
//! unaffected and that the result says what happened.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::sandbox;
use taper_python::{Outcome, Sandbox};

#[tokio::test]
async fn an_infinite_loop_hits_the_cpu_limit() {
    let sandbox = Sandbox::builder()
        .cpu_time_limit(Duration::from_secs(1))
        .wall_time_limit(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let run = sandbox.run("while True:\n    pass").await.unwrap();
    assert_eq!(run.outcome, Outcome::CpuTimeLimit, "{run:?}");
    assert!(run.state_lost);
    // One second of CPU, however busy the machine is.
    assert!(started.elapsed() < Duration::from_secs(25));
}

#[tokio::test]
async fn sleeping_forever_hits_the_wall_clock_limit() {
    let sandbox = Sandbox::builder()
        .wall_time_limit(Duration::from_millis(1500))
        .build()
        .await
        .unwrap();
    let mut session = sandbox.session().unwrap();
    session.run("x = 1").await.unwrap();
    let started = Instant::now();
    let run = session
        .run("import time\nprint('before', flush=True)\ntime.sleep(3600)")
        .await
        .unwrap();
    assert!(matches!(run.outcome, Outcome::Timeout { .. }), "{run:?}");
    assert_eq!(run.stdout, "before\n");
    assert!(run.state_lost);
    assert!(started.elapsed() < Duration::from_secs(6));
    // The session restarts cleanly; the old variables are gone.
    let run = session.run("'x' in globals()").await.unwrap();
    assert_eq!(run.value.as_deref(), Some("False"));
    session.close().await;
}

#[tokio::test]
async fn a_fork_bomb_hits_the_process_limit() {
    let sandbox = Sandbox::builder()
        .max_processes(32)
        .wall_time_limit(Duration::from_secs(4))
        .build()
        .await
        .unwrap();
    let mut session = sandbox.session().unwrap();
    // Every process keeps forking and ignores failures: only the wall clock
    // ends it, and the process cap keeps it from taking the machine.
    let run = session
        .run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
        .await
        .unwrap();
    assert!(
        matches!(run.outcome, Outcome::Timeout { .. } | Outcome::CpuTimeLimit),
        "{run:?}"
    );
    assert!(host_can_spawn());
    // The plain version gets the error from fork.
    let run = session
        .run("import os\nwhile True:\n    os.fork()")
        .await
        .unwrap();
    assert_eq!(
        run.outcome,
        Outcome::Exception {
            name: "BlockingIOError".into()
        },
        "{run:?}"
    );
    assert!(host_can_spawn());
    // The session still works, and the processes left over were killed.
    let run = session
        .run("import subprocess\nsubprocess.run(['true']).returncode")
        .await
        .unwrap();
    assert_eq!(run.value.as_deref(), Some("0"), "{run:?}");
    session.close().await;
}

#[tokio::test]
async fn a_crashed_interpreter_is_reported_and_replaced() {
    let mut session = sandbox().await.session().unwrap();
    session.run("x = 1").await.unwrap();
    let run = session
        .run("import ctypes\nctypes.string_at(0)")
        .await
        .unwrap();
    assert_eq!(
        run.outcome,
        Outcome::Signal {
            signal: libc::SIGSEGV
        },
        "{run:?}"
    );
    assert!(run.state_lost);
    let run = session.run("import os\nos._exit(3)").await.unwrap();
    assert_eq!(run.outcome, Outcome::Exit { code: 3 }, "{run:?}");
    assert!(run.state_lost);
    let run = session.run("'x' in globals()").await.unwrap();
    assert_eq!(run.value.as_deref(), Some("False"), "{run:?}");
    assert!(!run.state_lost);
    session.close().await;
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let sandbox = Sandbox::builder()
        .memory_limit(256 << 20)
        .build()
        .await
        .unwrap();
    let mut session = sandbox.session().unwrap();
    let run = session
        .run("blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))")
        .await
        .unwrap();
    assert_eq!(run.outcome, Outcome::MemoryLimit, "{run:?}");
    assert!(run.stderr.contains("MemoryError"));
    assert!(host_can_spawn());
    let run = session.run("del blocks\n1 + 1").await.unwrap();
    assert_eq!(run.value.as_deref(), Some("2"), "{run:?}");
    // A single huge allocation fails the same way.
    let run = session.run("b'x' * (4 << 30)").await.unwrap();
    assert_eq!(run.outcome, Outcome::MemoryLimit, "{run:?}");
    session.close().await;
}

#[tokio::test]
async fn a_flood_of_output_is_cut_and_killed() {
    let sandbox = Sandbox::builder()
        .max_output_bytes(10_000)
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    // 1 GB of output.
    let run = sandbox
        .run("import sys\nline = 'x' * 999 + '\\n'\nfor _ in range(1_000_000):\n    sys.stdout.write(line)")
        .await
        .unwrap();
    assert_eq!(run.outcome, Outcome::OutputLimit, "{run:?}");
    assert!(run.stdout.len() < 10_100, "{}", run.stdout.len());
    assert!(run.stdout.starts_with("xxx"));
    assert!(run.stdout.contains("[output truncated:"));
    assert!(started.elapsed() < Duration::from_secs(8));

    // Output just past the limit is cut but the run completes.
    let run = sandbox.run("print('y' * 20_000)\n7").await.unwrap();
    assert_eq!(run.outcome, Outcome::Ok);
    assert_eq!(run.value.as_deref(), Some("7"));
    assert!(
        run.stdout
            .ends_with("[output truncated: 10001 more bytes]\n")
    );
}

/// The host can still start processes.
fn host_can_spawn() -> bool {
    std::process::Command::new("true")
        .status()
        .is_ok_and(|s| s.success())
}

/// Prints, for each path, the first bytes read or the error.
const TRY_READ: &str = r#"
import os
for path in PATHS:
    try:
        if os.path.isdir(path):
            print(path, 'LISTED', os.listdir(path)[:3])
        else:
            with open(path, 'rb') as f:
                print(path, 'READ', f.read(20))
    except OSError as e:
        print(path, 'DENIED', type(e).__name__)
"#;

#[tokio::test]
async fn host_files_cannot_be_read() {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let secret = tempfile::Builder::new()
        .prefix(".taper-python-secret-")
        .tempfile_in(&home)
        .unwrap();
    std::fs::write(secret.path(), "secret").unwrap();
    let paths = [
        "/etc/shadow".to_owned(),
        "/etc/passwd".to_owned(),
        home.clone(),
        secret.path().display().to_string(),
        "/proc/1/environ".to_owned(),
        "/proc/self/status".to_owned(),
        std::env::temp_dir().display().to_string(),
    ];
    let code = format!("PATHS = {paths:?}\n{TRY_READ}");
    let run = sandbox().await.run(&code).await.unwrap();
    assert_eq!(run.outcome, Outcome::Ok, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), paths.len(), "{}", run.stdout);
    for (path, line) in paths.iter().zip(&lines) {
        assert!(
            line.starts_with(&format!("{path} DENIED")),
            "{path} was reachable: {line}"
        );
    }
    assert!(!run.stdout.contains("READ"), "{}", run.stdout);
}

#[tokio::test]
async fn links_do_not_lead_out() {
    let code = "import os\nout = []\n\
                os.symlink('/etc/passwd', 'soft')\n\
                for attempt in (lambda: open('soft').read(), lambda: os.link('/etc/passwd', 'hard'), \
                lambda: os.rename('soft', '../escaped')):\n    try:\n        attempt()\n        \
                out.append('ALLOWED')\n    except OSError as e:\n        out.append(type(e).__name__)\nout";
    let run = sandbox().await.run(code).await.unwrap();
    assert_eq!(run.outcome, Outcome::Ok, "{run:?}");
    let value = run.value.unwrap();
    assert!(!value.contains("ALLOWED"), "{value}");
}

#[tokio::test]
async fn nothing_outside_the_workdir_can_be_written() {
    let root = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::builder()
        .work_root(root.path())
        .build()
        .await
        .unwrap();
    let name = format!("taper-python-escape-{}", std::process::id());
    let targets = [
        std::env::temp_dir().join(&name),
        root.path().join(&name),
        Path::new("/dev/shm").join(&name),
    ];
    let code = format!(
        "import os\nfor path in {targets:?} + ['../{name}']:\n    try:\n        \
         open(path, 'w').write('x')\n        print('WROTE', path)\n    except OSError as e:\n        \
         print('DENIED', type(e).__name__)\nopen('inside.txt', 'w').write('ok')\n\
         os.listdir('.')"
    );
    let run = sandbox.run(&code).await.unwrap();
    assert_eq!(run.outcome, Outcome::Ok, "{run:?}");
    assert!(!run.stdout.contains("WROTE"), "{}", run.stdout);
    assert_eq!(run.stdout.matches("DENIED").count(), 4, "{}", run.stdout);
    assert_eq!(run.value.as_deref(), Some("['inside.txt']"));
    for target in &targets {
        assert!(!target.exists(), "{} was created", target.display());
    }
    // The one-shot working directory is gone too.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn there_is_no_network() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    \
         print('CONNECTED')\nexcept OSError as e:\n    print('ERROR', type(e).__name__, e)"
    );
    let run = sandbox().await.run(&code).await.unwrap();
    assert_eq!(run.outcome, Outcome::Ok, "{run:?}");
    assert!(run.stdout.starts_with("ERROR"), "{}", run.stdout);
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection arrived"
    );
}

#[tokio::test]
async fn killing_the_parent_or_everything_spares_the_host() {
    let mut session = sandbox().await.session().unwrap();
    session.run("x = 1").await.unwrap();
    for code in [
        "import os\nos.kill(os.getppid(), 9)",
        "import os\nos.kill(-1, 9)",
        "import os, signal\nos.killpg(0, signal.SIGKILL)",
        "import os\nfor pid in range(2, 400):\n    try:\n        os.kill(pid, 9)\n    except OSError:\n        pass",
    ] {
        let run = session.run(code).await.unwrap();
        // Whatever happened inside, it is reported and the host lives on.
        assert!(
            matches!(
                run.outcome,
                Outcome::Ok | Outcome::Exception { .. } | Outcome::Signal { .. }
            ),
            "{code}: {run:?}"
        );
        assert!(host_can_spawn());
    }
    let run = session.run("1 + 1").await.unwrap();
    assert_eq!(run.value.as_deref(), Some("2"));
    session.close().await;
}

#[tokio::test]
async fn nothing_the_code_starts_outlives_the_call() {
    let mut session = sandbox().await.session().unwrap();
    let code = "import os, subprocess, time\n\
                subprocess.Popen(['sh', '-c', 'sleep 1; echo x > marker_sh'])\n\
                if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        \
                time.sleep(1)\n        open('marker_py', 'w').write('x')\n    os._exit(0)\n\
                'started'";
    let run = session.run(code).await.unwrap();
    assert_eq!(run.value.as_deref(), Some("'started'"), "{run:?}");
    let workdir = session.workdir().to_path_buf();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(!workdir.join("marker_sh").exists());
    assert!(!workdir.join("marker_py").exists());
    session.close().await;
}

#[tokio::test]
async fn a_cancelled_run_kills_its_processes() {
    let mut session = sandbox().await.session().unwrap();
    let workdir = session.workdir().to_path_buf();
    let run = session.run("import time\ntime.sleep(1)\nopen('late', 'w').write('x')");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), run)
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!workdir.join("late").exists());
    let run = session.run("2 + 2").await.unwrap();
    assert_eq!(run.value.as_deref(), Some("4"));
    session.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_do_not_see_each_other() {
    let sandbox = sandbox().await;
    let sessions: Vec<_> = (0..3).map(|_| sandbox.session().unwrap()).collect();
    let dirs: Vec<String> = sessions
        .iter()
        .map(|s| s.workdir().display().to_string())
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut session) in sessions.into_iter().enumerate() {
        let code = format!(
            "import os\nopen('secret{i}.txt', 'w').write('{i}')\nseen = []\n\
             for d in {dirs:?}:\n    try:\n        seen.append(sorted(os.listdir(d)))\n    \
             except OSError:\n        seen.append('DENIED')\nseen"
        );
        tasks.spawn(async move {
            let run = session.run(&code).await.unwrap();
            session.close().await;
            (i, run)
        });
    }
    let mut finished = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, run) = joined.unwrap();
        assert_eq!(run.outcome, Outcome::Ok, "{run:?}");
        let expected: Vec<String> = (0..3)
            .map(|j| {
                if i == j {
                    format!("['secret{i}.txt']")
                } else {
                    "'DENIED'".to_owned()
                }
            })
            .collect();
        assert_eq!(
            run.value.as_deref(),
            Some(format!("[{}]", expected.join(", ")).as_str())
        );
        finished += 1;
    }
    assert_eq!(finished, 3);
}
