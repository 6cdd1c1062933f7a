//! Checkpoints in a group without an object store: every version is copied to the
//! other servers before it is logged, so a counting task whose leader *and* worker are
//! both killed with SIGKILL resumes on the new leader, through a new worker, from its
//! latest checkpoint and ends with the exact total (the new leader's own copy removed
//! by the test, so that it fetches the version from the other server); and retention
//! deletes the copies on every server. Real `drover server` and `drover worker` processes
//! (`common/servers.rs`).

mod common;

use common::servers::ServerSet;
use common::*;
use drover_types::{FailureCause, TaskState};
use std::path::PathBuf;
use std::time::Duration;

/// Steps the counting task takes in all (one every 100 ms).
const STEPS: u32 = 120;

/// The counting task of `checkpoint.rs`: its state is the file `steps` in its
/// checkpoint directory (one line per step), each step also logged to `progress`.
fn counter_script(progress: &std::path::Path) -> String {
    let p = sh_quote(progress);
    format!(
        r#"d="$DROVER_CHECKPOINT_DIR"
touch "$d/steps"
n=$(wc -l < "$d/steps")
echo "start attempt=$DROVER_ATTEMPT from=$n resumed=${{DROVER_RESUMED_FROM:-none}}" >> {p}
while [ "$n" -lt {STEPS} ]; do
  n=$((n+1))
  echo "$n" >> "$d/steps"
  echo "step attempt=$DROVER_ATTEMPT n=$n" >> {p}
  sleep 0.1
done
echo "steps=$(wc -l < "$d/steps") sum=$(awk '{{s+=$1}} END {{print s}}' "$d/steps") dups=$(sort -n "$d/steps" | uniq -d | wc -l)""#
    )
}

/// The `n` of the last step attempt `attempt` logged, and the line of its start.
fn progress_of(text: &str, attempt: u32) -> (Option<u32>, Option<String>) {
    let tag = format!("attempt={attempt} ");
    let mut last = None;
    let mut start = None;
    for line in text.lines() {
        let spaced = format!("{line} ");
        if !spaced.contains(&tag) {
            continue;
        }
        if let Some(rest) = line.strip_prefix("step ") {
            last = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("n="))
                .and_then(|v| v.parse().ok());
        } else if line.starts_with("start ") {
            start = Some(line.to_string());
        }
    }
    (last, start)
}

/// Server `i`'s checkpoint files of `task` (`<attempt>.<version>`), sorted.
fn copies(set: &ServerSet, i: usize, task: u64) -> Vec<String> {
    let dir: PathBuf = set.data_dir(i).join(format!("server/checkpoints/{task}"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".tmp"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_counting_task_resumes_on_a_new_leader_and_worker_after_both_are_killed() {
    let mut set = ServerSet::new("ha-ckpt");
    // Short enough to see retention take the copies within the test.
    set.add_server_args(&["--retain-for", "5s"]);
    for i in 0..3 {
        set.start(i);
    }
    let leader = set.wait_leader(SLOW);
    let a = set.add_worker("a", &["--cpus", "1", "--memory", "4G"]);
    let progress = set.root.join("progress");
    std::fs::write(&progress, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&progress, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = set.cli_ok(&[
        "submit",
        "--name",
        "counter",
        "--retries",
        "1",
        "--checkpoint-interval",
        "1s",
        "--shell",
        "--",
        &counter_script(&progress),
    ]);
    let id: u64 = out.stdout.trim().parse().unwrap();

    // 1. A checkpoint of attempt 1 is recorded, and by then it is on every server (a
    //    majority before it is logged, the third just after).
    let recorded = poll(
        "a checkpoint of attempt 1 (version 2 or later)",
        Duration::from_secs(60),
        || {
            let ck = set.task_on(leader, id)?.checkpoint?;
            (ck.attempt.0 == 1 && ck.version >= 2).then_some(ck)
        },
        || set.logs(),
    );
    let name = format!("{}.{}", recorded.attempt.0, recorded.version);
    poll(
        &format!("checkpoint {name} on all three servers"),
        SLOW,
        || {
            (0..3)
                .all(|i| copies(&set, i, id).contains(&name))
                .then_some(())
        },
        || {
            format!(
                "{:?}\n{}",
                (0..3).map(|i| copies(&set, i, id)).collect::<Vec<_>>(),
                set.logs()
            )
        },
    );

    // 2. The worker and the leader are both killed with SIGKILL.
    set.kill_worker(&a);
    set.kill(leader);
    let killed_at = poll(
        "attempt 1's last step to be logged",
        SLOW,
        || {
            let before = progress_of(&read(&progress), 1).0?;
            std::thread::sleep(Duration::from_millis(600));
            let after = progress_of(&read(&progress), 1).0?;
            (before == after).then_some(after)
        },
        || set.logs(),
    );
    assert!(killed_at < STEPS, "the task ended before it was killed");
    let new_leader = set.wait_leader(SLOW);
    assert_ne!(new_leader, leader);
    let latest = set
        .task_on(new_leader, id)
        .and_then(|t| t.checkpoint)
        .expect("the new leader knows the checkpoint");
    assert_eq!(latest.attempt.0, 1, "{latest:?}");
    // The new leader holds the version (it was copied there before it was logged).
    // Its copy is removed here, while attempt 2 cannot start yet (worker a is not
    // declared lost for 30 s): the new leader must then fetch it from the other
    // live server when it sends the start.
    let held = set.data_dir(new_leader).join(format!(
        "server/checkpoints/{id}/{}.{}",
        latest.attempt.0, latest.version
    ));
    assert!(held.exists(), "the new leader lacks {}", held.display());
    std::fs::remove_file(&held).unwrap();

    // 3. A new worker joins; once the new leader declares a lost (its clock starts
    //    afresh: --worker-timeout 30s), attempt 2 runs there from the latest checkpoint.
    set.add_worker("b", &["--cpus", "1", "--memory", "4G"]);
    let start2 = poll(
        "attempt 2 to log its start",
        Duration::from_secs(90),
        || progress_of(&read(&progress), 2).1,
        || set.logs(),
    );
    let from2: u32 = start2
        .split_whitespace()
        .find_map(|w| w.strip_prefix("from="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no from= in {start2:?}"));
    assert!(
        start2.ends_with(&format!("resumed=attempt 1 version {}", latest.version)),
        "DROVER_RESUMED_FROM names the latest checkpoint ({latest}): {start2:?}"
    );
    let fetched = read(&set.log(new_leader));
    assert!(
        fetched.contains("checkpoint fetched from a peer"),
        "the new leader did not say it fetched the checkpoint from a peer"
    );
    assert!(
        held.exists(),
        "the new leader did not keep the fetched copy"
    );
    // At most one interval (10 steps) plus the copy's delay is redone.
    assert!(
        from2 > 0 && from2 <= killed_at && killed_at - from2 <= 15,
        "attempt 2 resumed from {from2}; attempt 1 had reached {killed_at}"
    );

    // 4. Attempt 2's checkpoints are copied by the new leader to the other live server;
    //    the killed server comes back meanwhile (it holds attempt 1's copies).
    let other = (0..3).find(|i| *i != leader && *i != new_leader).unwrap();
    poll(
        "a checkpoint of attempt 2 on both live servers",
        SLOW,
        || {
            [new_leader, other]
                .iter()
                .all(|i| copies(&set, *i, id).iter().any(|n| n.starts_with("2.")))
                .then_some(())
        },
        || set.logs(),
    );
    assert!(
        !copies(&set, leader, id).is_empty(),
        "the killed leader's disk holds the task's checkpoints"
    );
    set.start(leader);

    let t = poll(
        "the task to end",
        Duration::from_secs(60),
        || {
            let t = set.task_on(new_leader, id)?;
            t.state.is_final().then_some(t)
        },
        || set.logs(),
    );
    let text = read(&progress);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{text}");
    assert_eq!(
        t.result.as_deref().map(str::trim),
        Some(format!("steps={STEPS} sum={} dups=0", STEPS * (STEPS + 1) / 2).as_str()),
        "the exact total, no step done twice:\n{text}"
    );
    assert_eq!(t.attempts.len(), 2, "{t:#?}");
    assert!(
        matches!(t.attempts[0].failure, Some(FailureCause::WorkerLost { .. })),
        "{t:#?}"
    );
    assert_eq!(
        t.attempts[1].resumed_from.as_ref().map(|r| r.version),
        Some(latest.version),
        "{t:#?}"
    );
    println!(
        "attempt 1 reached step {killed_at}; attempt 2 on the new leader resumed from {from2} ({})",
        latest
    );

    // 5. Retention (5 s) retires the task and every server deletes its copies, the
    //    restarted one included.
    poll(
        "the task's checkpoints to leave every server",
        Duration::from_secs(60),
        || {
            let retired = set.get(new_leader, &format!("/v1/tasks/{id}")).status == 410;
            (retired && (0..3).all(|i| copies(&set, i, id).is_empty())).then_some(())
        },
        || {
            format!(
                "{:?}\n{}",
                (0..3).map(|i| copies(&set, i, id)).collect::<Vec<_>>(),
                set.logs()
            )
        },
    );
    assert!(
        !set.data_dir(leader)
            .join(format!("server/checkpoints/{id}"))
            .exists(),
        "the restarted server kept the retired task's checkpoint directory"
    );
}
