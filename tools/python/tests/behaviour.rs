//! What well-behaved code gets back: output, values, errors, sessions.

mod common;

use std::path::Path;
use std::time::Duration;

use common::sandbox;
use taper_python::{DESCRIPTION, Error, Outcome, PythonArgs, Sandbox};

#[tokio::test]
async fn returns_stdout_and_the_final_expression() {
    let run = sandbox()
        .await
        .run("print('hello')\nx = 6\nx * 7")
        .await
        .unwrap();
    assert_eq!(run.outcome, Outcome::Ok);
    assert_eq!(run.stdout, "hello\n");
    assert_eq!(run.stderr, "");
    assert_eq!(run.value.as_deref(), Some("42"));
    assert!(!run.state_lost);

    let run = sandbox().await.run("'a' + 'b'").await.unwrap();
    assert_eq!(run.value.as_deref(), Some("'ab'"));
    // Statements and `None` have no value.
    let run = sandbox().await.run("y = 1\nNone").await.unwrap();
    assert_eq!(run.value, None);
    let run = sandbox()
        .await
        .run("for i in range(2):\n    i")
        .await
        .unwrap();
    assert_eq!(run.value, None);
}

#[tokio::test]
async fn exceptions_give_a_traceback() {
    let run = sandbox()
        .await
        .run("def f(x):\n    return 1 / x\nf(0)")
        .await
        .unwrap();
    assert_eq!(
        run.outcome,
        Outcome::Exception {
            name: "ZeroDivisionError".into()
        }
    );
    assert!(run.stderr.starts_with("Traceback"), "{}", run.stderr);
    assert!(run.stderr.contains("return 1 / x"), "{}", run.stderr);
    assert!(run.stderr.contains("ZeroDivisionError: division by zero"));
    // The driver's own frames are not shown.
    assert!(!run.stderr.contains("_taper_driver"), "{}", run.stderr);

    let run = sandbox().await.run("print('a'\n").await.unwrap();
    assert_eq!(
        run.outcome,
        Outcome::Exception {
            name: "SyntaxError".into()
        }
    );
    assert!(run.stderr.contains("SyntaxError"), "{}", run.stderr);

    let run = sandbox()
        .await
        .run("import sys\nsys.exit(3)")
        .await
        .unwrap();
    assert_eq!(run.outcome, Outcome::Exit { code: 3 });
}

#[tokio::test]
async fn sessions_keep_variables_until_reset() {
    let mut session = sandbox().await.session().unwrap();
    session
        .run("x = 41\ndef inc(v):\n    return v + 1")
        .await
        .unwrap();
    let run = session.run("inc(x)").await.unwrap();
    assert_eq!(run.value.as_deref(), Some("42"));
    std::fs::metadata(session.workdir()).unwrap();
    session
        .run("open('kept.txt', 'w').write('still here')")
        .await
        .unwrap();

    session.reset().await;
    let run = session.run("x").await.unwrap();
    assert_eq!(
        run.outcome,
        Outcome::Exception {
            name: "NameError".into()
        }
    );
    // Files survive a reset.
    let run = session.run("open('kept.txt').read()").await.unwrap();
    assert_eq!(run.value.as_deref(), Some("'still here'"));

    let workdir = session.workdir().to_path_buf();
    session.close().await;
    assert!(!workdir.exists());
}

#[tokio::test]
async fn a_dropped_session_removes_its_directory() {
    let mut session = sandbox().await.session().unwrap();
    session.run("open('f', 'w').write('x')").await.unwrap();
    let workdir = session.workdir().to_path_buf();
    drop(session);
    for _ in 0..100 {
        if !workdir.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} still exists", workdir.display());
}

#[tokio::test]
async fn the_environment_is_scrubbed() {
    let run = sandbox()
        .await
        .run("import os\nsorted(os.environ)")
        .await
        .unwrap();
    assert_eq!(
        run.value.as_deref(),
        Some("['HOME', 'LANG', 'PATH', 'TMPDIR']")
    );
    let run = sandbox()
        .await
        .run("import os\nos.getcwd() == os.environ['HOME']")
        .await
        .unwrap();
    assert_eq!(run.value.as_deref(), Some("True"));
}

#[tokio::test]
async fn long_values_and_odd_output_are_safe() {
    let run = sandbox()
        .await
        .run("import sys\nsys.stdout.buffer.write(b'\\xff\\xfe ok\\n')\n'x' * 100000")
        .await
        .unwrap();
    assert_eq!(run.outcome, Outcome::Ok);
    assert!(run.stdout.ends_with(" ok\n"));
    let value = run.value.unwrap();
    assert!(value.len() < 70_000, "{}", value.len());
    assert!(value.ends_with("more characters]"));

    let run = sandbox()
        .await
        .run("class A:\n    def __repr__(self):\n        raise ValueError\nA()")
        .await
        .unwrap();
    assert_eq!(run.outcome, Outcome::Ok);
    assert_eq!(run.value.as_deref(), Some("<repr failed: ValueError>"));
}

#[tokio::test]
async fn reports_protections() {
    let sandbox = sandbox().await;
    let protections = sandbox.protections();
    assert_eq!(protections.len(), 4);
    for state in protections {
        assert!(
            state.provided_by.is_some(),
            "{} is missing on this machine",
            state.protection
        );
    }
    assert_eq!(sandbox.python_version().0, 3);
    assert!(sandbox.interpreter().is_absolute());
}

#[tokio::test]
async fn a_missing_interpreter_is_a_typed_error() {
    let error = Sandbox::builder()
        .interpreter("/nonexistent/python3")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InterpreterNotFound { .. }),
        "{error}"
    );

    let error = Sandbox::builder()
        .interpreter("no-such-python-anywhere")
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InterpreterNotFound { .. }),
        "{error}"
    );

    let error = Sandbox::builder()
        .interpreter("/bin/true")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotPython3 { .. }), "{error}");
}

#[tokio::test]
async fn python2_is_refused() {
    let Some(python2) = [
        "/usr/bin/python2",
        "/root/.pyenv/versions/2.7.18/bin/python",
    ]
    .iter()
    .find(|p| Path::new(p).exists()) else {
        return;
    };
    let error = Sandbox::builder()
        .interpreter(*python2)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotPython3 { .. }), "{error}");
}

#[tokio::test]
async fn the_system_interpreter_works_too() {
    if !Path::new("/usr/bin/python3").exists() {
        return;
    }
    let sandbox = Sandbox::builder()
        .interpreter("/usr/bin/python3")
        .build()
        .await
        .unwrap();
    let run = sandbox.run("import json\njson.dumps([1])").await.unwrap();
    assert_eq!(run.value.as_deref(), Some("'[1]'"));
    assert_eq!(run.stderr, "");
}

#[tokio::test]
async fn too_much_code_is_refused() {
    let code = "#".repeat(taper_python::MAX_CODE_BYTES + 1);
    let error = sandbox().await.run(&code).await.unwrap_err();
    assert!(matches!(error, Error::CodeTooLarge { .. }), "{error}");
}

#[test]
fn tool_arguments_and_description() {
    let schema = serde_json::to_value(schemars::schema_for!(PythonArgs)).unwrap();
    let code = &schema["properties"]["code"];
    assert_eq!(code["type"], "string");
    assert!(code["description"].as_str().unwrap().contains("print()"));
    assert_eq!(schema["required"][0], "code");

    let args: PythonArgs = serde_json::from_str(r#"{"code": "1 + 1"}"#).unwrap();
    assert_eq!(args.code, "1 + 1");
    assert!(serde_json::from_str::<PythonArgs>(r#"{"code": "1", "x": 2}"#).is_err());

    assert!(DESCRIPTION.contains("no network"));
    assert!(DESCRIPTION.contains("Examples"));
}

#[tokio::test]
async fn extreme_limits_do_not_break_the_sandbox() {
    let sandbox = Sandbox::builder()
        .wall_time_limit(Duration::MAX)
        .cpu_time_limit(Duration::MAX)
        .memory_limit(u64::MAX)
        .max_processes(u64::MAX)
        .max_file_size(u64::MAX)
        .max_output_bytes(usize::MAX)
        .build()
        .await
        .unwrap();
    let run = sandbox.run("print('ok')\n1").await.unwrap();
    assert_eq!(
        (run.stdout.as_str(), run.value.as_deref()),
        ("ok\n", Some("1"))
    );

    let error = Sandbox::builder()
        .memory_limit(1 << 20)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Startup { .. }), "{error}");
}
