//! A server that joins a group after the log it missed was purged gets the state as a
//! snapshot, over the servers' HTTP transport (chunked install_snapshot, binary chunks),
//! received into a file, checked and made its own current snapshot.

use drover_client::Client;
use drover_server::ServerConfig;
use drover_server::tls::{CertRole, CertificateAuthority, TlsPaths};
use drover_types::TaskSpec;
use std::time::{Duration, Instant};

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_far_behind_is_sent_a_snapshot() {
    let root =
        std::env::temp_dir().join(format!("drover-snapshot-transfer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut peers: Vec<String> = free_ports(3)
        .into_iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    peers.sort();
    // A group needs certificates of one CA (a server of a group does not make its own).
    let ca = CertificateAuthority::create().unwrap();
    for i in 0..3 {
        let tls = TlsPaths::in_data_dir(&root.join(format!("s{i}")));
        ca.issue(
            CertRole::Server,
            &format!("s{i}"),
            &["127.0.0.1".to_string()],
        )
        .unwrap()
        .write(&tls.dir, CertRole::Server)
        .unwrap();
        std::fs::write(tls.ca(), ca.cert_pem()).unwrap();
    }
    let tls = drover_client::tls::client_config(ca.cert_pem(), None).unwrap();
    let config = |i: usize| {
        let mut c = ServerConfig::new(root.join(format!("s{i}")));
        c.listen = peers[i].parse().unwrap();
        c.peers = peers.clone();
        c.token = Some("cluster".into());
        c.peer_token = Some("peers".into());
        c.snapshot_every = 50;
        c.keep_after_snapshot = 5;
        c
    };
    // Two of three: a majority; the third is not there yet.
    let a = drover_server::start(config(0)).await.expect("server 1");
    let b = drover_server::start(config(1)).await.expect("server 2");
    let urls = format!("{},{}", a.url(), b.url());
    let client = Client::new(urls, Some("cluster".into()))
        .with_tls(tls.clone())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first = None;
    let mut last = None;
    let mut n = 0;
    while n < 200 {
        match client.submit_task(&TaskSpec::command(["/bin/true"])).await {
            Ok(r) => {
                first.get_or_insert(r.first);
                last = Some(r.first);
                n += 1;
            }
            // The group is still forming.
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no write got through: {e}"),
        }
    }
    let (first, last) = (first.unwrap(), last.unwrap());
    // The log the third server would need is gone.
    let leader = if a.node.is_leader() { &a } else { &b };
    let purged = leader
        .node
        .raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.purged.is_some(), "the log purged behind a snapshot")
        .await
        .expect("a purge");
    assert!(purged.purged.unwrap().index > 5, "{purged:?}");

    let c = drover_server::start(config(2)).await.expect("server 3");
    let caught_up = c
        .node
        .raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.snapshot.is_some(), "a snapshot installed")
        .await
        .expect("the third server received a snapshot");
    assert!(caught_up.snapshot.is_some());
    let third = Client::new(c.url(), Some("cluster".into()))
        .with_tls(tls.clone())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got_first = third.task(&first.0.to_string()).await.is_ok();
        let got_last = third.task(&last.0.to_string()).await.is_ok();
        if got_first && got_last {
            break;
        }
        assert!(Instant::now() < deadline, "the third server lacks tasks");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The received snapshot is the third server's own now: the binary format, whole.
    let received = std::fs::read(root.join("s2").join("snapshot.bin")).expect("snapshot.bin");
    assert_eq!(received[..8], drover_state::MAGIC);
    let reader = drover_state::SnapshotReader::open(&received[..]).expect("a snapshot header");
    let state = reader.state().expect("a whole, valid snapshot");
    assert!(state.sched.task_count() >= 1, "{state:?}");
    // The leader built its snapshot off the lock; it says what that cost.
    let stats = leader
        .node
        .state
        .snapshot_stats()
        .expect("the leader built a snapshot");
    assert!(stats.bytes > 0 && stats.index > 0, "{stats:?}");
    c.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
    let _ = std::fs::remove_dir_all(&root);
}
