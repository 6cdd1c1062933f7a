//! Checkpoints, black-box: a counting task that keeps its progress in
//! `DROVER_CHECKPOINT_DIR` is stopped twice on two workers — its agent killed with
//! SIGKILL (the reaper kills the task; the server declares the worker lost), then
//! evicted by a higher-priority task — and still ends with the exact total, each
//! attempt resuming where the previous one's latest checkpoint left it. Also: why a
//! high-priority task waits when preemption is on but nothing may be evicted.

mod common;

use common::*;
use drover_types::{FailureCause, TaskState};
use serde_json::json;
use std::time::Duration;

/// Steps the counting task takes in all (one every 100 ms).
const STEPS: u32 = 80;

/// The counting task: its state is the file `steps` in its checkpoint directory (one
/// line per step done, so a checkpoint is always consistent: a step is one append).
/// Each step is also logged to `progress` (outside, for the test); on SIGTERM it logs
/// where it stopped and exits, the agent then takes the last checkpoint.
fn counter_script(progress: &std::path::Path) -> String {
    let p = sh_quote(progress);
    format!(
        r#"d="$DROVER_CHECKPOINT_DIR"
touch "$d/steps"
n=$(wc -l < "$d/steps")
echo "start attempt=$DROVER_ATTEMPT from=$n resumed=${{DROVER_RESUMED_FROM:-none}}" >> {p}
trap 'echo "stop attempt=$DROVER_ATTEMPT at=$n" >> {p}; exit 143' TERM
while [ "$n" -lt {STEPS} ]; do
  n=$((n+1))
  echo "$n" >> "$d/steps"
  echo "step attempt=$DROVER_ATTEMPT n=$n" >> {p}
  sleep 0.1
done
echo "steps=$(wc -l < "$d/steps") sum=$(awk '{{s+=$1}} END {{print s}}' "$d/steps") dups=$(sort -n "$d/steps" | uniq -d | wc -l)""#
    )
}

/// The `n` of the last step attempt `attempt` logged, and where it started from.
fn progress_of(text: &str, attempt: u32) -> (Option<u32>, Option<u32>) {
    let num = |line: &str, key: &str| -> Option<u32> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
    };
    let tag = format!("attempt={attempt} ");
    let mut last = None;
    let mut from = None;
    for line in text.lines() {
        let line = format!("{line} ");
        if !line.contains(&tag) {
            continue;
        }
        if line.starts_with("step ") {
            last = num(&line, "n=");
        } else if line.starts_with("start ") {
            from = num(&line, "from=");
        }
    }
    (last, from)
}

#[test]
fn a_counting_task_killed_on_two_workers_finishes_with_the_exact_total() {
    let mut c = Cluster::start("ckpt-count");
    c.add_worker("a", &["--cpus", "1", "--memory", "4G"]);
    let progress = c.file("progress");
    std::fs::write(&progress, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&progress, std::fs::Permissions::from_mode(0o666)).unwrap();
    // Submitted with the CLI, as a user would: one retry (a lost worker spends one).
    let out = c.cli_ok(&[
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
    let id: u64 = out
        .stdout
        .split(|ch: char| !ch.is_ascii_digit())
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no task id in {out}"));
    c.wait_state(id, "running", SLOW);

    // 1. Worker a's agent is killed with SIGKILL once a checkpoint of attempt 1 is on
    //    the server and the task is some way in.
    c.poll("a checkpoint of attempt 1", SLOW, || {
        let t = c.task(id);
        let ck = t.checkpoint?;
        (ck.attempt.0 == 1 && ck.version >= 2).then_some(())
    });
    c.add_worker("b", &["--cpus", "1", "--memory", "4G"]);
    c.kill_worker("a");
    let killed_at = c.poll("attempt 1's last step to be logged", SLOW, || {
        // The reaper kills the task: its progress stops.
        let before = progress_of(&read(&progress), 1).0?;
        std::thread::sleep(Duration::from_millis(600));
        let after = progress_of(&read(&progress), 1).0?;
        (before == after).then_some(after)
    });
    assert!(killed_at < STEPS, "the task ended before it was killed");

    // 2. Attempt 2 runs on b from attempt 1's latest checkpoint.
    c.poll("attempt 2 to run", Duration::from_secs(60), || {
        let t = c.task(id);
        (t.attempt.0 == 2 && t.state == TaskState::Running).then_some(())
    });
    c.poll("attempt 2 to log its start", SLOW, || {
        progress_of(&read(&progress), 2).1
    });
    let (_, from2) = progress_of(&read(&progress), 2);
    let from2 = from2.unwrap();
    // At most one interval (10 steps) plus the upload's delay is redone.
    assert!(
        from2 > 0 && from2 <= killed_at && killed_at - from2 <= 15,
        "attempt 2 resumed from {from2}; attempt 1 had reached {killed_at}"
    );

    // 3. Preemption on; a higher-priority task evicts attempt 2 once it has saved a
    //    checkpoint of its own.
    c.poll("a checkpoint of attempt 2", SLOW, || {
        let ck = c.task(id).checkpoint?;
        (ck.attempt.0 == 2).then_some(())
    });
    let mut policy = c.get_ok("/v1/policy");
    policy["preemption"] = json!(true);
    policy["preemption_grace_ms"] = json!(3000);
    assert_eq!(c.put("/v1/policy", &policy).status, 200);
    let high = c.submit(json!({"name": "urgent", "command": ["sleep", "1"], "priority": 100}));
    assert_eq!(c.wait_final(high, SLOW).state, TaskState::Succeeded);

    let t = c.wait_final(id, Duration::from_secs(90));
    let text = read(&progress);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}\n{text}");
    assert_eq!(
        t.result.as_deref().map(str::trim),
        Some(format!("steps={STEPS} sum={} dups=0", STEPS * (STEPS + 1) / 2).as_str()),
        "the exact total, no step done twice:\n{text}"
    );
    assert_eq!(t.attempts.len(), 3, "{t:#?}");
    assert!(
        matches!(t.attempts[0].failure, Some(FailureCause::WorkerLost { .. })),
        "{t:#?}"
    );
    assert_eq!(
        t.attempts[1].failure,
        Some(FailureCause::Preempted),
        "{t:#?}"
    );
    let r2 = t.attempts[1]
        .resumed_from
        .clone()
        .expect("attempt 2 resumed");
    let r3 = t.attempts[2]
        .resumed_from
        .clone()
        .expect("attempt 3 resumed");
    assert_eq!((r2.attempt.0, r3.attempt.0), (1, 2), "{t:#?}");
    // The eviction's checkpoint was taken after SIGTERM: attempt 3 starts exactly
    // where attempt 2 stopped.
    let stopped_at: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("stop attempt=2 at="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("attempt 2 did not log its stop:\n{text}"));
    assert_eq!(
        progress_of(&text, 3).1,
        Some(stopped_at),
        "attempt 3 resumed where the evicted attempt stopped:\n{text}"
    );
    assert!(
        text.contains(&format!("start attempt=2 from={from2} resumed={r2}")),
        "DROVER_RESUMED_FROM names the checkpoint:\n{text}"
    );

    // What a user reads: where each attempt resumed, the checkpoint, and a retry
    // budget that the eviction did not spend.
    let status = c.cli_ok(&["status", &id.to_string()]).stdout;
    println!("{status}");
    println!(
        "attempt 1 reached step {killed_at}; attempt 2 resumed from {from2}; attempt 2 stopped at {stopped_at}"
    );
    for want in [
        "attempt:   3 (1 evicted, not counted; 2 of 2 allowed used)",
        &format!("resumed from {r2}"),
        &format!("resumed from {r3}"),
        "checkpoint: attempt ",
    ] {
        assert!(status.contains(want), "{want:?} not in:\n{status}");
    }
}

#[test]
fn a_high_priority_task_says_why_running_tasks_are_not_preempted() {
    let mut c = Cluster::start("ckpt-why");
    let w = c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let mut policy = c.get_ok("/v1/policy");
    policy["preemption"] = json!(true);
    assert_eq!(c.put("/v1/policy", &policy).status, 200);
    let gate = c.file("gate");
    let hold = format!("while [ ! -f {} ]; do sleep 0.05; done", sh_quote(&gate));
    // Two tasks with the default --retries 0: they may not run twice.
    let a = c.submit(json!({"command": [hold.clone()], "shell": true}));
    let b = c.submit(json!({"command": [hold], "shell": true}));
    c.wait_state(a, "running", SLOW);
    c.wait_state(b, "running", SLOW);
    let high = c.submit(json!({"command": ["true"], "priority": 10}));
    let want =
        format!("preemption on, but the 2 running tasks on {w} cannot be preempted: not retryable");
    let reason = c.poll("the pending reason to explain", SLOW, || {
        let r = c.task(high).reason?;
        r.contains(&want).then_some(r)
    });
    let status = c.cli_ok(&["status", &high.to_string()]).stdout;
    assert!(status.contains(&want), "{reason}\n{status}");
    touch(&gate);
    assert_eq!(c.wait_final(high, SLOW).state, TaskState::Succeeded);
}

#[test]
fn a_preemptible_task_with_no_retries_is_evicted_without_spending_one() {
    let mut c = Cluster::start("ckpt-preemptible");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    let mut policy = c.get_ok("/v1/policy");
    policy["preemption"] = json!(true);
    policy["preemption_grace_ms"] = json!(500);
    assert_eq!(c.put("/v1/policy", &policy).status, 200);
    let runs = c.file("runs");
    std::fs::write(&runs, "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&runs, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = c.cli_ok(&[
        "submit",
        "--preemptible",
        "--shell",
        "--",
        &format!("echo low-$DROVER_ATTEMPT >> {}; sleep 2", sh_quote(&runs)),
    ]);
    let low: u64 = out
        .stdout
        .split(|ch: char| !ch.is_ascii_digit())
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap();
    c.poll("the low task to start", SLOW, || {
        read(&runs).contains("low-1").then_some(())
    });
    let high = c.submit(json!({"command": ["true"], "priority": 100}));
    assert_eq!(c.wait_final(high, SLOW).state, TaskState::Succeeded);
    let t = c.wait_final(low, SLOW);
    assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
    assert_eq!(t.attempts[0].failure, Some(FailureCause::Preempted));
    let status = c.cli_ok(&["status", &low.to_string()]).stdout;
    assert!(
        status.contains("attempt:   2 (1 evicted, not counted; 1 of 1 allowed used)"),
        "{status}"
    );
}
