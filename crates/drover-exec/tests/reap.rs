//! Crash recovery: a new driver with the same agent_id kills what the old one left.

mod common;

use common::*;
use drover_exec::ProcessDriver;
use std::time::Duration;

#[test]
fn reap_orphans_kills_a_crashed_predecessors_tasks() {
    for mode in modes() {
        let root = Scratch::new(&format!("reap-{mode:?}"));
        let cfg = config(&root, &format!("reap-{mode:?}"), mode);
        let pids = {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let d = ProcessDriver::new(cfg.clone()).unwrap();
            let pids = rt.block_on(async {
                let a = d.launch(sh(1, "echo $$ > pids; exec sleep 1000")).unwrap();
                let b = d
                    .launch(sh(
                        2,
                        "setsid sh -c 'echo $$ >> pids; sleep 1000 & echo $! >> pids; wait' & echo $$ >> pids; wait",
                    ))
                    .unwrap();
                let mut pids = read_pids(&a.dir().join("pids"), 1).await;
                pids.extend(read_pids(&b.dir().join("pids"), 3).await);
                // Like a crash: the handles are never waited on.
                std::mem::forget(a);
                std::mem::forget(b);
                pids
            });
            // The monitors die with the runtime, as they would with the agent.
            rt.shutdown_background();
            drop(d);
            pids
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            pids.iter().all(|p| alive(*p)),
            "{mode:?}: tasks should outlive the 'crash'"
        );

        let d = ProcessDriver::new(cfg).unwrap();
        let mut found = d.reap_orphans();
        found.sort_by_key(|r| r.task);
        let tasks: Vec<(u64, u32)> = found.iter().map(|r| (r.task, r.attempt)).collect();
        assert_eq!(tasks, vec![(1, 1), (2, 1)], "{mode:?}: {found:?}");
        for p in &pids {
            assert!(
                found.iter().any(|r| r.pids.contains(&(*p as u32))),
                "{mode:?}: pid {p} not reported in {found:?}"
            );
        }
        assert!(
            all_gone(&pids, Duration::from_secs(1)),
            "{mode:?}: survivors in {pids:?}"
        );
        assert!(
            d.reap_orphans().is_empty(),
            "{mode:?}: second reap finds nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reap_orphans_leaves_the_current_incarnations_tasks_alone() {
    let root = Scratch::new("reap-own");
    let d = driver(&root, "reap-own", drover_exec::CgroupMode::Auto);
    let a = d.launch(sh(1, "sleep 1000")).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(d.reap_orphans().is_empty());
    let pid = a.pid().unwrap() as i32;
    assert!(alive(pid));
    a.kill_handle().kill(Duration::ZERO);
    assert_eq!(a.wait().await.outcome, drover_types::Outcome::Killed);
}
