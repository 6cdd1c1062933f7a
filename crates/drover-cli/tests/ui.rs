//! The web UI, in a real browser: headless Chromium driven through chromedriver
//! (thirtyfour), against a real server and worker. Logging in, submitting from the
//! form, watching a task go from queued to running to succeeded without a reload, its
//! live output, cancel and retry, validation errors from the API, a job's DAG, paging,
//! drain and resume, switching policy; and strings a user submitted (`<script>`, an
//! `<img onerror>`) never executing; the task table paging quickly through a million
//! tasks. Plus the session cookie's rules (over TLS, as the server serves by default).
//!
//! Chromium and chromedriver must be installed (`scripts/test.sh` installs Debian's
//! `chromium` and `chromium-driver`): without them these tests fail, they do not skip.
//! With `DROVER_SCREENSHOTS=1` the walkthrough writes `docs/screenshots/*.png`.

mod common;

use common::*;
use serde_json::{Value, json};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use thirtyfour::prelude::*;

const CHROMIUM: &[&str] = &["/usr/bin/chromium", "/usr/bin/chromium-browser"];
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session; its chromedriver is killed on drop.
struct Browser {
    driver: Option<WebDriver>,
    chromedriver: Child,
    log: PathBuf,
    /// Chromium's `--user-data-dir`, unique to this session.
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
        // A test that failed never quit its browser: its processes are found by the
        // profile directory this session alone uses.
        for (pid, _) in processes_with_cmdline(&self.profile.to_string_lossy()) {
            sigkill(pid);
        }
    }
}

impl Browser {
    async fn start(dir: &Path) -> Browser {
        let chromium = CHROMIUM
            .iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!(
                    "no Chromium at {CHROMIUM:?}: install it (apt-get install -y --no-install-recommends chromium chromium-driver; scripts/test.sh does)"
                )
            });
        assert!(
            Path::new(CHROMEDRIVER).exists(),
            "no {CHROMEDRIVER}: install chromium-driver (scripts/test.sh does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.join("chromedriver.log");
        let chromedriver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = dir.join("chromium-profile");
        let mut b = Browser {
            driver: None,
            chromedriver,
            log,
            profile: profile.clone(),
        };
        let deadline = Instant::now() + SLOW;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(chromium).unwrap();
        // As root Chromium runs only without its sandbox; a laptop-sized window.
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--window-size=1366,900",
            "--disable-dev-shm-usage",
        ] {
            caps.add_arg(arg).unwrap();
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.display()))
            .unwrap();
        // The test cluster's server certificate is signed by the CA it made on first
        // start, which this throwaway profile does not know; what is tested here is the
        // page, not certificate checking (tests/tls.rs checks that, with every client).
        caps.add_arg("--ignore-certificate-errors").unwrap();
        // thirtyfour's reqwest is built without a crypto provider (no C build): ring.
        drover_client::tls::install_provider();
        let driver = WebDriver::new(format!("http://127.0.0.1:{port}"), caps)
            .await
            .unwrap_or_else(|e| panic!("a Chromium session: {e}\n{}", tail(&b.log, 20)));
        b.driver = Some(driver);
        b
    }

    fn d(&self) -> &WebDriver {
        self.driver.as_ref().unwrap()
    }

    async fn quit(mut self) {
        if let Some(d) = self.driver.take() {
            let _ = d.quit().await;
        }
    }

    /// Waits until `css` matches an element whose text satisfies `ok`; its text.
    async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SLOW;
        let mut last = String::from("(no such element)");
        loop {
            if let Ok(e) = self.d().find(By::Css(css)).await
                && let Ok(t) = e.text().await
            {
                if ok(&t) {
                    return t;
                }
                last = t;
            }
            if Instant::now() >= deadline {
                let url = self.d().current_url().await.map(|u| u.to_string());
                panic!(
                    "timed out waiting for {css} to show {what}; it shows {last:?} (at {url:?})"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_js(&self, script: &str, what: &str) -> Value {
        let deadline = Instant::now() + SLOW;
        loop {
            let v = self
                .d()
                .execute(script, Vec::<Value>::new())
                .await
                .map(|r| r.json().clone())
                .unwrap_or(Value::Null);
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            if Instant::now() >= deadline {
                let page = self
                    .d()
                    .execute(
                        "return location.hash + '\\n' + document.querySelector('main').innerText;",
                        Vec::<Value>::new(),
                    )
                    .await
                    .map(|r| r.json().clone());
                panic!("timed out waiting for {what}; the page: {page:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn go(&self, url: &str) {
        self.d().goto(url).await.expect("navigate");
    }

    /// Opens a route of the app by its hash (no reload).
    async fn hash(&self, hash: &str) {
        self.d()
            .execute(
                &format!("location.hash = {};", json!(hash)),
                Vec::<Value>::new(),
            )
            .await
            .expect("set location.hash");
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.d().find(By::Css(css)).await.expect(css);
        e.clear().await.expect("clear");
        if !text.is_empty() {
            e.send_keys(text).await.expect("type");
        }
    }

    async fn click(&self, css: &str) {
        let deadline = Instant::now() + SLOW;
        loop {
            let r = match self.d().find(By::Css(css)).await {
                Ok(e) => e.click().await,
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => panic!("click {css}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn login(&self, url: &str, token: &str) {
        self.go(&format!("{url}/")).await;
        self.wait_text("#login-form h1", "the login form", |t| t == "Log in")
            .await;
        self.fill("#token", token).await;
        self.click("#login-submit").await;
        self.wait_text("main h1", "the dashboard", |t| t == "Dashboard")
            .await;
    }

    async fn screenshot(&self, name: &str) {
        if std::env::var("DROVER_SCREENSHOTS").is_ok_and(|v| v == "1") {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
            std::fs::create_dir_all(&dir).expect("docs/screenshots");
            self.d()
                .screenshot(&dir.join(format!("{name}.png")))
                .await
                .expect("screenshot");
        }
    }
}

/// Runs the async part of a test on a multi-threaded runtime, so that the harness's
/// blocking HTTP calls can be made with `block_in_place`.
fn run<F: Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The id in a `#/task/ID` URL.
async fn task_id_of_page(b: &Browser) -> u64 {
    let v = b
        .wait_js(
            "const m = location.hash.match(/^#\\/task\\/(\\d+)$/); return m ? Number(m[1]) : null;",
            "a task page",
        )
        .await;
    v.as_u64().unwrap()
}

#[test]
fn walkthrough_login_submit_watch_cancel_retry_dag_paging_drain_policy() {
    let mut c = Cluster::start("ui-walk");
    let worker = c.add_worker("w", &["--cpus", "4", "--memory", "4G"]);
    let c = c;
    run(async {
        let b = Browser::start(&c.root).await;
        b.login(&c.url, &c.token).await;
        b.wait_text("#leader", "the leader", |t| t.starts_with("node "))
            .await;
        b.wait_text("#workers-up", "one worker up", |t| t.starts_with('1'))
            .await;

        // Drain the worker so that the next task stays queued while we look at it.
        blocking(|| {
            let r = c.post(&format!("/v1/workers/{worker}/drain"), &json!({}));
            assert_eq!(r.status, 200, "{}", r.text());
        });

        // Submit from the form.
        b.hash("#/submit").await;
        b.fill(
            "#s-command",
            "sh -c 'echo hello-ui; sleep 2; echo bye-ui >&2'",
        )
        .await;
        b.fill("#s-name", "greeting").await;
        b.fill("#s-cpus", "0.5").await;
        b.fill("#s-memory", "64M").await;
        b.fill("#s-priority", "5").await;
        b.fill("#s-timeout", "1m").await;
        b.fill("#s-retries", "1").await;
        b.fill("#s-labels", "team=ui").await;
        b.click("#submit-task").await;
        let id = task_id_of_page(&b).await;
        // Marks this document: a reload would lose it.
        b.d()
            .execute("window.__sameDocument = 1;", Vec::<Value>::new())
            .await
            .unwrap();
        b.wait_text("#task-state", "queued", |t| t == "ready").await;
        b.wait_text("#task-reason", "a pending reason", |t| !t.is_empty())
            .await;
        let spec = blocking(|| c.task(id)).spec;
        assert_eq!(spec.command.len(), 3, "{spec:?}");
        assert_eq!(spec.command[2], "echo hello-ui; sleep 2; echo bye-ui >&2");
        assert_eq!(spec.resources.cpu_milli, 500);
        assert_eq!(spec.resources.memory_bytes, 64 << 20);
        assert_eq!(spec.priority, 5);
        assert_eq!(spec.max_runtime_ms, Some(60_000));
        assert_eq!(spec.retry.max_attempts, 2);
        assert_eq!(spec.labels.get("team").map(String::as_str), Some("ui"));

        blocking(|| {
            let r = c.post(&format!("/v1/workers/{worker}/resume"), &json!({}));
            assert_eq!(r.status, 200, "{}", r.text());
        });
        b.wait_text("#task-state", "running", |t| t == "running")
            .await;
        // Live output while it runs.
        b.wait_text("#stdout", "live stdout", |t| t.contains("hello-ui"))
            .await;
        b.wait_text("#task-state", "succeeded", |t| t == "succeeded")
            .await;
        b.wait_text("#stderr", "stderr", |t| t.contains("bye-ui"))
            .await;
        b.wait_text("#attempts tbody", "the attempt", |t| t.contains("exit 0"))
            .await;
        let same = b
            .d()
            .execute("return window.__sameDocument === 1;", Vec::<Value>::new())
            .await
            .unwrap();
        assert_eq!(same.json(), &Value::Bool(true), "the page was reloaded");
        // Tall enough to show the attempts and the output.
        b.d().set_window_rect(0, 0, 1366, 1300).await.unwrap();
        b.screenshot("task").await;
        b.d().set_window_rect(0, 0, 1366, 900).await.unwrap();

        // A long task: cancel it, then retry it as a new task, and cancel that one.
        b.hash("#/submit").await;
        b.fill("#s-command", "sleep 300").await;
        b.fill("#s-name", "long").await;
        b.click("#submit-task").await;
        let long = task_id_of_page(&b).await;
        assert_ne!(long, id);
        b.wait_text("#task-state", "running", |t| t == "running")
            .await;
        // Its worker's page lists it among the running tasks.
        let wid = blocking(|| c.get_ok("/v1/workers"))[0]["id"]
            .as_u64()
            .unwrap();
        b.hash(&format!("#/worker/{wid}")).await;
        b.wait_text("#worker-tasks tbody", "the long task", |t| {
            t.starts_with(&format!("{long} long"))
        })
        .await;
        b.hash(&format!("#/task/{long}")).await;
        b.click("#cancel").await;
        b.wait_text("#task-state", "cancelled", |t| t == "cancelled")
            .await;
        assert_eq!(blocking(|| c.task(long)).state.as_str(), "cancelled");
        b.click("#retry").await;
        let again = b
            .wait_js(
                &format!(
                    "const m = location.hash.match(/^#\\/task\\/(\\d+)$/); return m && Number(m[1]) !== {long} ? Number(m[1]) : null;"
                ),
                "the retried task's page",
            )
            .await
            .as_u64()
            .unwrap();
        b.wait_text("#task-state", "the copy running", |t| t == "running")
            .await;
        assert_eq!(
            blocking(|| c.task(again)).spec.command,
            vec!["sleep", "300"]
        );
        b.click("#cancel").await;
        b.wait_text("#task-state", "cancelled", |t| t == "cancelled")
            .await;

        // Validation errors come from the API, next to their field.
        b.hash("#/submit").await;
        b.fill("#s-command", "true").await;
        b.fill("#s-cpus", "lots").await;
        b.click("#submit-task").await;
        let msg = b
            .wait_text("#s-cpus-error", "an error next to CPUs", |t| !t.is_empty())
            .await;
        assert!(msg.contains("resources.cpu_milli"), "{msg}");
        b.fill("#s-cpus", "").await;
        b.fill("#s-command", "").await;
        b.click("#submit-task").await;
        b.wait_text("#s-command-error", "an error next to the command", |t| {
            t.contains("command")
        })
        .await;
        assert_eq!(
            b.d()
                .find(By::Css("#s-cpus-error"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "",
            "old errors are cleared"
        );

        // A job's DAG, coloured live.
        let (job, first, _) = blocking(|| {
            c.submit_job(json!({"name": "diamond", "tasks": [
                {"key": "fetch", "command": ["sleep", "1"], "resources": {"cpu_milli": 100}},
                {"key": "left", "after": ["fetch"], "command": ["true"], "resources": {"cpu_milli": 100}},
                {"key": "right", "after": ["fetch"], "command": ["true"], "resources": {"cpu_milli": 100}},
                {"key": "join", "after": ["left", "right"], "command": ["true"], "resources": {"cpu_milli": 100}}
            ]}))
        });
        b.hash(&format!("#/job/{job}")).await;
        b.wait_js(
            "return document.querySelectorAll('#dag a[data-task]').length === 4 && document.querySelectorAll('#dag .dag-edge').length === 4;",
            "4 nodes and 4 edges",
        )
        .await;
        b.wait_js(
            "return document.querySelectorAll('#dag .dag-node.st-succeeded').length === 4;",
            "every node green",
        )
        .await;
        b.wait_text("#job-progress", "job done", |t| t.starts_with("4 of 4"))
            .await;
        // The join node is drawn right of its parents.
        let xs = b
            .d()
            .execute(
                &format!(
                    "return [{first}, {}].map(id => document.querySelector(`#dag a[data-task=\"${{id}}\"] rect`).getAttribute('x'));",
                    first + 3
                ),
                Vec::<Value>::new(),
            )
            .await
            .unwrap();
        let xs: Vec<f64> = xs
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().parse().unwrap())
            .collect();
        assert!(xs[0] < xs[1], "{xs:?}");
        b.screenshot("dag").await;

        // Paging: 60 more tasks, pages of 50, in id order.
        blocking(|| {
            c.submit_job(json!({"name": "many", "tasks": [
                {"key": "part", "array": {"start": 0, "end": 59}, "command": ["true"], "resources": {"cpu_milli": 100}}
            ]}))
        });
        b.hash("#/tasks").await;
        b.wait_js(
            "return document.querySelectorAll('#tasks tbody tr[data-task]').length === 50;",
            "a first page of 50",
        )
        .await;
        let first_page_last = b
            .wait_js(
                "const r = document.querySelectorAll('#tasks tbody tr[data-task]'); return Number(r[r.length - 1].dataset.task);",
                "the last id of page 1",
            )
            .await
            .as_u64()
            .unwrap();
        b.click("#next-page").await;
        let second_first = b
            .wait_js(
                &format!(
                    "const r = document.querySelector('#tasks tbody tr[data-task]'); return r && Number(r.dataset.task) > {first_page_last} ? Number(r.dataset.task) : null;"
                ),
                "page 2",
            )
            .await
            .as_u64()
            .unwrap();
        assert_eq!(second_first, first_page_last + 1);
        b.click("#prev-page").await;
        b.wait_js(
            "const r = document.querySelector('#tasks tbody tr[data-task]'); return r && r.dataset.task === '1';",
            "back on page 1",
        )
        .await;
        // Filters: only the succeeded ones named "greeting".
        b.hash("#/tasks?state=succeeded&name=greeting").await;
        b.wait_js(
            &format!(
                "const r = document.querySelectorAll('#tasks tbody tr[data-task]'); return r.length === 1 && r[0].dataset.task === '{id}';"
            ),
            "the filtered list",
        )
        .await;

        // Drain and resume from the workers page.
        b.hash("#/workers").await;
        b.click("#workers button.drain").await;
        b.wait_text("#workers button.drain", "Resume", |t| t == "Resume")
            .await;
        assert_eq!(blocking(|| c.get_ok("/v1/workers"))[0]["state"], "draining");
        b.click("#workers button.drain").await;
        b.wait_text("#workers button.drain", "Drain", |t| t == "Drain")
            .await;
        assert_eq!(blocking(|| c.get_ok("/v1/workers"))[0]["state"], "active");

        // Switch policy.
        b.hash("#/policy").await;
        b.wait_text("#policy-current", "the policy", |t| t.contains("placement"))
            .await;
        b.d()
            .execute(
                "document.querySelector('#p-queue').value = 'fcfs'; document.querySelector('#p-placement').value = 'spread';",
                Vec::<Value>::new(),
            )
            .await
            .unwrap();
        b.click("#policy-submit").await;
        b.wait_text("#policy-msg", "switched", |t| t == "Switched.")
            .await;
        let p = blocking(|| c.get_ok("/v1/policy"));
        assert_eq!(p["queue"]["kind"], "fcfs", "{p}");
        assert_eq!(p["placement"], "spread", "{p}");

        // The dashboard, with what ran, for the screenshot.
        b.hash("#/").await;
        b.wait_text("#count-succeeded", "succeeded tasks", |t| {
            t.parse::<u64>().is_ok_and(|n| n >= 5)
        })
        .await;
        // The throughput chart counts what finished in the last minutes.
        b.wait_js(
            "const l = document.querySelector('svg.chart').getAttribute('aria-label'); return parseInt(l) >= 5;",
            "the chart to count the finished tasks",
        )
        .await;
        // Two tasks holding resources while the dashboard is photographed.
        let busy: Vec<u64> = blocking(|| {
            (0..2)
                .map(|i| {
                    c.submit(
                        json!({"name": format!("busy-{i}"), "command": ["sleep", "60"],
                        "resources": {"cpu_milli": 1500, "memory_bytes": 1u64 << 30}}),
                    )
                })
                .collect()
        });
        b.wait_text("#count-running", "two running", |t| t == "2")
            .await;
        b.screenshot("dashboard").await;
        blocking(|| {
            for id in &busy {
                let r = c.post(&format!("/v1/tasks/{id}/cancel"), &json!({}));
                assert_eq!(r.status, 200, "{}", r.text());
            }
        });

        // A job file (the API's JSON), uploaded from the submit page.
        let file = c.root.join("job.json");
        std::fs::write(
            &file,
            json!({"name": "uploaded", "tasks": [
                {"key": "one", "command": ["true"], "resources": {"cpu_milli": 100}},
                {"key": "two", "after": ["one"], "command": ["true"], "resources": {"cpu_milli": 100}}
            ]})
            .to_string(),
        )
        .unwrap();
        b.hash("#/submit").await;
        let input = b.d().find(By::Css("#job-file")).await.unwrap();
        input.send_keys(file.to_str().unwrap()).await.unwrap();
        b.click("#submit-job").await;
        b.wait_text("main h1", "the uploaded job's page", |t| {
            t.ends_with("uploaded")
        })
        .await;
        b.wait_js(
            "return document.querySelectorAll('#dag .dag-node.st-succeeded').length === 2;",
            "the uploaded job done",
        )
        .await;

        // Logging out closes the API to this browser.
        b.click("#logout").await;
        b.wait_text("#login-form h1", "the login form", |t| t == "Log in")
            .await;
        let status = b
            .wait_js(
                "return fetch('/v1/cluster').then(r => r.status);",
                "a status",
            )
            .await;
        assert_eq!(status, json!(401));
        b.quit().await;
    });
}

#[test]
fn strings_users_submit_are_shown_as_text_and_never_run() {
    let mut c = Cluster::start("ui-xss");
    c.add_worker("w", &["--cpus", "2"]);
    let c = c;
    const NAME: &str = "<script>window.__xss='name'</script>";
    const LABEL: &str = "<img src=x onerror=\"window.__xss='label'\">";
    const OUT: &str = "<script>window.__xss=\"out\"</script><img src=x onerror=window.__xss=2>";
    run(async {
        let b = Browser::start(&c.root).await;
        b.login(&c.url, &c.token).await;
        b.hash("#/submit").await;
        b.fill("#s-command", &format!("printf %s '{OUT}'")).await;
        b.fill("#s-name", NAME).await;
        b.fill("#s-labels", &format!("evil={LABEL}")).await;
        // Submitted from the keyboard: Enter in a field.
        let name = b.d().find(By::Css("#s-name")).await.unwrap();
        name.send_keys(Key::Enter).await.unwrap();
        let id = task_id_of_page(&b).await;
        b.wait_text("#task-state", "succeeded", |t| t == "succeeded")
            .await;
        b.wait_text("#stdout", "the output, as text", |t| t == OUT)
            .await;
        b.wait_text("#task-name", "the name, as text", |t| t == NAME)
            .await;
        b.wait_text("#task-labels", "the label, as text", |t| {
            t == format!("evil={LABEL}")
        })
        .await;
        let t = blocking(|| c.task(id));
        assert_eq!(t.name, NAME);
        assert_eq!(t.result.as_deref(), Some(OUT));

        // The same strings in the list, the job page and the dashboard.
        b.hash("#/tasks").await;
        b.wait_text(&format!("#tasks tr[data-task=\"{id}\"]"), "the row", |t| {
            t.contains(NAME)
        })
        .await;
        b.hash(&format!("#/job/{}", t.job)).await;
        b.wait_js(
            "return document.querySelector('#dag a[data-task]') !== null;",
            "the DAG",
        )
        .await;
        b.wait_text("main h1", "the job's name", |t| t.contains(NAME))
            .await;
        b.hash("#/").await;
        b.wait_text("main h1", "the dashboard", |t| t == "Dashboard")
            .await;

        // Nothing ran, and no element was made from the strings.
        let v = b
            .d()
            .execute(
                "return [window.__xss === undefined ? null : window.__xss, document.querySelectorAll('script:not([src]), img, main script').length];",
                Vec::<Value>::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            v.json(),
            &json!([null, 0]),
            "injected markup ran or was parsed"
        );
        b.quit().await;
    });
}

/// The session cookie, over TLS: what it opens and what it does not.
#[test]
fn the_session_cookie_opens_the_api_only_and_changes_need_the_csrf_header() {
    let c = Cluster::start("ui-cookie");
    let addr = c.addr.as_str();
    let req = |method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>| {
        http_with(addr, method, path, None, headers, body).expect("request")
    };
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let csrf = ("X-Drover-CSRF", "1");
    let body = format!("token={}", c.token);

    // The page is public, with a strict CSP; the API is not.
    let page = req("GET", "/", &[], None);
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(page.text().contains("/ui/app.js"));
    let js = req("GET", "/ui/app.js", &[], None);
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap_or_default()
            .starts_with("text/javascript")
    );
    assert_eq!(req("GET", "/ui/nope.js", &[], None).status, 404);
    assert_eq!(req("GET", "/v1/cluster", &[], None).status, 401);

    // Login: needs the CSRF header and the right token.
    let r = req("POST", "/ui/login", &[form], Some(body.as_bytes()));
    assert_eq!(r.status, 403, "{}", r.text());
    let r = req("POST", "/ui/login", &[form, csrf], Some(b"token=wrong"));
    assert_eq!(r.status, 401, "{}", r.text());
    let r = req("POST", "/ui/login", &[form, csrf], Some(body.as_bytes()));
    assert_eq!(r.status, 204, "{}", r.text());
    let set = r.header("set-cookie").expect("a cookie").to_string();
    // `Secure` because the server speaks TLS: a browser never sends it in clear.
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    let pair = set.split(';').next().unwrap().to_string();
    assert!(pair.starts_with("drover_session="), "{set}");
    assert!(
        !pair.contains(&c.token),
        "the cookie is not the token: {set}"
    );
    let cookie = ("Cookie", pair.as_str());

    // Reads with the cookie; changes only with the header as well.
    assert_eq!(req("GET", "/v1/cluster", &[cookie], None).status, 200);
    let task = br#"{"command":["true"]}"#;
    let r = req("POST", "/v1/tasks", &[cookie], Some(task));
    assert_eq!(r.status, 403, "{}", r.text());
    let r = req("POST", "/v1/tasks", &[cookie, csrf], Some(task));
    assert_eq!(r.status, 201, "{}", r.text());

    // Never the worker endpoint, nor the servers' routes, nor as a bearer token.
    let ws = [
        cookie,
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let r = req("GET", drover_proto::worker::WORKER_CONNECT_PATH, &ws, None);
    assert_eq!(r.status, 401, "{}", r.text());
    // Over TLS the servers' routes first want a server certificate (mutual TLS): 403.
    let r = req("POST", "/v1/raft/append", &[cookie, csrf], Some(b"{}"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error()["code"], "forbidden");
    let value = pair.trim_start_matches("drover_session=");
    let r = http(addr, "GET", "/v1/cluster", Some(value), None);
    assert_eq!(r.status, 401, "{}", r.text());

    // A forged or tampered cookie opens nothing.
    // The last hex digit of the MAC changed.
    let last = if value.ends_with('0') { '1' } else { '0' };
    let forged = format!("drover_session={}{last}", &value[..value.len() - 1]);
    let r = req("GET", "/v1/cluster", &[("Cookie", forged.as_str())], None);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = req(
        "GET",
        "/v1/cluster",
        &[("Cookie", "drover_session=99999999999.00")],
        None,
    );
    assert_eq!(r.status, 401, "{}", r.text());

    // Logout clears it.
    let r = req("POST", "/ui/logout", &[cookie, csrf], None);
    assert_eq!(r.status, 204);
    let cleared = r.header("set-cookie").unwrap_or_default();
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Secure"),
        "{cleared}"
    );
}

/// The task table with a million tasks: a page is a range of the id-ordered table, so
/// the first page, one deep in the table and a filtered one all come quickly.
#[test]
fn a_million_tasks_page_quickly() {
    let c = Cluster::start("ui-million");
    // No worker: they all stay queued.
    let (_, first, count) = blocking_submit_million(&c);
    assert_eq!(count, 1_000_000);
    run(async {
        let b = Browser::start(&c.root).await;
        b.login(&c.url, &c.token).await;
        b.wait_text("#count-ready", "a million queued", |t| t == "1000000")
            .await;
        let timed = |hash: String, want_first: u64| {
            let b = &b;
            async move {
                let started = Instant::now();
                b.hash(&hash).await;
                b.wait_js(
                    &format!(
                        "const r = document.querySelectorAll('#tasks tbody tr[data-task]'); return r.length === 50 && r[0].dataset.task === '{want_first}';"
                    ),
                    &format!("page {hash}"),
                )
                .await;
                started.elapsed()
            }
        };
        let mut worst = Duration::ZERO;
        for (hash, want) in [
            ("#/tasks".to_string(), first),
            (
                format!("#/tasks?cursor={}", first + 999_000),
                first + 999_001,
            ),
            (
                format!("#/tasks?state=ready&cursor={}", first + 500_000),
                first + 500_001,
            ),
        ] {
            worst = worst.max(timed(hash, want).await);
        }
        b.click("#next-page").await;
        b.wait_js(
            &format!(
                "const r = document.querySelector('#tasks tbody tr[data-task]'); return r && r.dataset.task === '{}';",
                first + 500_051
            ),
            "the next page",
        )
        .await;
        // Generous for a debug build on a loaded machine; the API answers in ~50 ms.
        assert!(worst < Duration::from_secs(3), "slowest page: {worst:?}");
        b.quit().await;
    });
}

fn blocking_submit_million(c: &Cluster) -> (u64, u64, u64) {
    c.submit_job(json!({"name": "million", "tasks": [
        {"key": "part", "array": {"start": 0, "end": 999_999}, "command": ["true"]}
    ]}))
}

/// A task completed from the result cache says so: a "cached" badge and a link to the
/// task whose run it took, on its page and in the table; its output is that run's.
#[test]
fn a_cached_task_shows_its_badge_and_its_origins_output() {
    let mut c = Cluster::start("ui-cache");
    c.add_worker("w", &["--cpus", "2"]);
    let c = c;
    let spec = json!({"command": ["sh", "-c", "echo from-the-first-run"], "cache": {}});
    let first = c.submit(spec.clone());
    c.wait_final(first, SLOW);
    let second = c.submit(spec);
    let t = c.wait_final(second, SLOW);
    assert_eq!(t.cached_from, Some(drover_types::TaskId(first)), "{t:#?}");
    run(async {
        let b = Browser::start(&c.root).await;
        b.login(&c.url, &c.token).await;
        b.hash(&format!("#/task/{second}")).await;
        b.wait_text("#task-cached", "the cached badge", |t| t == "cached")
            .await;
        b.wait_text("#task-cached-from", "the origin", |t| {
            t.contains(&format!("task {first}"))
        })
        .await;
        b.wait_text("#stdout", "the first run's output", |t| {
            t.trim() == "from-the-first-run"
        })
        .await;
        b.hash("#/tasks").await;
        b.wait_text(
            &format!("#tasks tr[data-task=\"{second}\"] td.state"),
            "the badge in the table",
            |t| t.contains("cached"),
        )
        .await;
        b.quit().await;
    });
}
