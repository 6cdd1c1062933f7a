//! Jobs are re-runnable: keys are scoped to their job, a bare key names the newest task
//! with it, `JOB_NAME/KEY` the newest job with that name, `JOB_ID/KEY` exactly that job.

mod common;

use common::*;
use drover_types::TaskState;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// What an example documents it prints: the rest of a comment line `... # prints X`.
fn documented_output(text: &str) -> Option<String> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .find_map(|l| {
            l.split_once("# prints ")
                .map(|(_, x)| format!("{}\n", x.trim()))
        })
}

#[test]
fn every_example_runs_twice_in_a_row_with_the_same_output() {
    let mut c = Cluster::start("rerun-examples");
    c.add_worker("w", &["--cpus", "4", "--memory", "4G"]);
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/")
        .map(|e| e.expect("examples/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no job files in examples/");
    for file in &files {
        let expected = documented_output(&read(file));
        let mut outputs = Vec::new();
        for run in 1..=2 {
            let out = run_with_timeout(
                c.cli_command(&["run", "-f", file.to_str().unwrap()]),
                Duration::from_secs(120),
                || c.logs(),
            );
            assert_eq!(out.code(), Some(0), "{} run {run}: {out}", file.display());
            if let Some(want) = &expected {
                assert_eq!(&out.stdout, want, "{} run {run}: {out}", file.display());
            }
            outputs.push(out.stdout);
        }
        assert_eq!(outputs[0], outputs[1], "{}", file.display());
    }
    let sum = files
        .iter()
        .find(|f| f.ends_with("sum_of_squares.yaml"))
        .expect("the sum-of-squares example");
    assert_eq!(
        documented_output(&read(sum)).as_deref(),
        Some("333333833333500000\n")
    );
}

/// Splits a README command line into words (plain words and '...' quoting only).
fn words(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for ch in line.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// The README's step-by-step DAG: its `drover submit` lines after "A DAG from the
/// command line", with `/tmp/d` replaced by a file in `dir`.
fn readme_dag(dir: &Path) -> Vec<Vec<String>> {
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"));
    let (_, rest) = readme
        .split_once("A DAG from the command line")
        .expect("the README's DAG section");
    let block = rest.split("```").nth(1).expect("its code block");
    let data = dir.join("d");
    let lines: Vec<Vec<String>> = block
        .lines()
        .filter(|l| l.starts_with("drover submit"))
        .map(|l| words(&l.replace("/tmp/d", data.to_str().unwrap()))[1..].to_vec())
        .collect();
    assert_eq!(lines.len(), 3, "three submit lines in:\n{block}");
    lines
}

#[test]
fn the_readmes_dag_runs_twice_and_each_run_depends_on_its_own_tasks() {
    let mut c = Cluster::start("rerun-dag");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let dir = c.file("dag");
    std::fs::create_dir_all(&dir).unwrap();
    // Tasks run as `nobody` when the tests run as root, and write here.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let lines = readme_dag(&dir);
    let mut runs: Vec<Vec<u64>> = Vec::new();
    for _ in 0..2 {
        let ids: Vec<u64> = lines
            .iter()
            .map(|args| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = c.cli_ok(&args);
                out.stdout
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{out}"))
            })
            .collect();
        runs.push(ids);
    }
    for ids in &runs {
        for &id in ids {
            let t = c.wait_final(id, SLOW);
            assert_eq!(t.state, TaskState::Succeeded, "{t:#?}");
        }
        let (fetch, build, deploy) = (ids[0], ids[1], ids[2]);
        assert_eq!(c.task(build).deps, vec![drover_types::TaskId(fetch)]);
        assert_eq!(c.task(deploy).deps, vec![drover_types::TaskId(build)]);
        assert_eq!(c.task(build).result.as_deref(), Some("data\n"));
        assert_eq!(c.task(deploy).result.as_deref(), Some("deployed\n"));
    }
    assert!(runs[1][0] > runs[0][2], "the second run has new tasks");
    // A bare key names the newest task with it; JOB_ID/KEY an older one.
    let status = |reference: &str| -> u64 {
        let out = c.cli_ok(&["--json", "status", reference]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["id"].as_u64().unwrap()
    };
    assert_eq!(status("fetch"), runs[1][0]);
    let first_job = c.task(runs[0][0]).job;
    assert_eq!(status(&format!("{first_job}/fetch")), runs[0][0]);
    let out = c.cli(&["status", "nope/fetch"]);
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("no job named \"nope\""), "{out}");
}

#[test]
fn a_job_file_depends_on_another_jobs_task_by_job_name_or_id() {
    let mut c = Cluster::start("rerun-cross");
    c.add_worker("w", &["--cpus", "2", "--memory", "4G"]);
    let counter = c.file("count");
    let producer = c.file("producer.yaml");
    std::fs::write(
        &producer,
        format!(
            "name: producer\ntasks:\n  - key: make\n    shell: true\n    command: |\n      echo x >> {f}; wc -l < {f}\n",
            f = sh_quote(&counter)
        ),
    )
    .unwrap();
    // Twice: the second run prints 2.
    let mut jobs = Vec::new();
    for run in 1..=2 {
        let out = c.cli_ok(&[
            "--json",
            "submit",
            "--wait",
            "-f",
            producer.to_str().unwrap(),
        ]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        jobs.push(v["id"].as_u64().unwrap_or_else(|| panic!("{out}")));
        let make = c.cli_ok(&["--json", "status", "producer/make"]);
        let make: serde_json::Value = serde_json::from_str(&make.stdout).unwrap();
        assert_eq!(make["result"], format!("{run}\n"), "{make}");
    }
    let consumer = c.file("consumer.yaml");
    std::fs::write(
        &consumer,
        format!(
            "name: consumer\ntasks:\n  - key: newest\n    after: [producer/make]\n    command: cat\n  - key: first\n    after: ['{}/make']\n    command: cat\n",
            jobs[0]
        ),
    )
    .unwrap();
    let out = c.cli_ok(&["run", "-f", consumer.to_str().unwrap()]);
    assert_eq!(
        out.stdout, "2\n1\n",
        "newest producer's result, then job {}'s: {out}",
        jobs[0]
    );
    let newest = c.cli_ok(&["--json", "status", "consumer/newest"]);
    let newest: serde_json::Value = serde_json::from_str(&newest.stdout).unwrap();
    let make2 = c.cli_ok(&["--json", "status", "producer/make"]);
    let make2: serde_json::Value = serde_json::from_str(&make2.stdout).unwrap();
    assert_eq!(newest["deps"], serde_json::json!([make2["id"]]));
    // A name no job has, and a key the named job lacks, are said as such.
    std::fs::write(
        &consumer,
        "tasks:\n  - command: cat\n    after: [nightly/make]\n  - command: cat\n    after: [producer/fetch]\n",
    )
    .unwrap();
    let out = c.cli(&["submit", "-f", consumer.to_str().unwrap()]);
    assert!(!out.status.success(), "{out}");
    assert!(out.stderr.contains("no job named \"nightly\""), "{out}");
}

#[test]
fn cancel_by_bare_key_takes_the_newest_and_job_qualified_the_named_one() {
    let mut c = Cluster::start("rerun-cancel");
    c.add_worker("w", &["--cpus", "1", "--memory", "4G"]);
    // Arrays of three long tasks, twice under the same key.
    let mut firsts = Vec::new();
    for _ in 0..2 {
        let out = c.cli_ok(&[
            "--json", "submit", "--key", "arr", "--array", "0-2", "--", "sleep", "60",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        firsts.push((v["job"].as_u64().unwrap(), v["first"].as_u64().unwrap()));
    }
    let out = c.cli_ok(&["cancel", "arr"]);
    assert_eq!(out.stdout.trim(), "cancelled 3 tasks", "{out}");
    for i in 0..3 {
        assert_eq!(c.task(firsts[1].1 + i).state, TaskState::Cancelled);
        assert!(!c.task(firsts[0].1 + i).state.is_final());
    }
    let out = c.cli_ok(&["cancel", &format!("{}/arr", firsts[0].0)]);
    assert_eq!(out.stdout.trim(), "cancelled 3 tasks", "{out}");
    for i in 0..3 {
        c.wait_final(firsts[0].1 + i, SLOW);
        assert_eq!(c.task(firsts[0].1 + i).state, TaskState::Cancelled);
    }
}
