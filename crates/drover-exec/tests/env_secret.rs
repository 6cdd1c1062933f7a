//! The agent's own secrets never reach tasks. A separate test binary with a single
//! test, so setting the variable cannot race with other threads.

mod common;

use common::*;
use drover_exec::CgroupMode;

#[test]
#[allow(unsafe_code)]
fn agent_secrets_do_not_leak_into_tasks() {
    // SAFETY: the only test in this binary, before any other thread exists.
    unsafe {
        std::env::set_var("DROVER_TOKEN", "s3cret");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "s3cret");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = Scratch::new("secret");
    let d = driver(&root, "secret", CgroupMode::Off);
    let f = rt.block_on(async { d.launch(spec(1, &["env"])).unwrap().wait().await });
    let out = String::from_utf8(f.result).unwrap();
    assert!(out.contains("DROVER_TASK_ID=1"), "{out}");
    assert!(!out.contains("s3cret"), "secret leaked: {out}");
}
