//! The harness itself: servers start on free ports, keep or lose their data across restarts
//! as asked, require their credentials, and clusters serve every slot and fail over.

use std::time::Duration;

use redis::{Commands, Value};
use sluice_redis_server::{
    ClientAuth, RedisCluster, RedisServer, ServerOptions, TestPki, binaries,
};

#[test]
fn a_server_answers_and_restarts_with_or_without_its_data() {
    let found = binaries().expect("a redis-server");
    assert!(found.version >= (6, 2, 0), "{found:?}");
    let mut server = RedisServer::start().unwrap();
    let mut c = server.connection().unwrap();
    let _: () = c.set("k", "v").unwrap();
    drop(c);
    let port = server.port();

    server.restart(true).unwrap();
    assert_eq!(server.port(), port, "a restart keeps the port");
    let got: Option<String> = server.connection().unwrap().get("k").unwrap();
    assert_eq!(got.as_deref(), Some("v"), "a clean stop saves the data");

    server.restart(false).unwrap();
    let got: Option<String> = server.connection().unwrap().get("k").unwrap();
    assert_eq!(got, None, "restart without data starts empty");

    server.kill();
    assert!(!server.is_running());
    assert!(
        server.connection().is_err(),
        "a killed server does not answer"
    );
    server.restart(true).unwrap();
    assert!(server.is_running());
}

#[test]
fn two_servers_get_different_ports_and_dirs() {
    let a = RedisServer::start().unwrap();
    let b = RedisServer::start().unwrap();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    let dir = a.dir().to_path_buf();
    drop(a);
    assert!(!dir.exists(), "dropping a server removes its directory");
}

#[test]
fn a_password_and_an_acl_user_are_required() {
    let server = RedisServer::start_with(ServerOptions {
        password: Some("pw-default".to_owned()),
        acl_user: Some(("limiter".to_owned(), "pw-limiter".to_owned())),
        ..ServerOptions::default()
    })
    .unwrap();
    let anonymous = redis::Client::open(server.url()).unwrap();
    let mut c = anonymous.get_connection().unwrap();
    let denied: redis::RedisResult<Value> = redis::cmd("PING").query(&mut c);
    assert!(denied.is_err(), "no credentials: {denied:?}");
    assert!(
        server
            .url_with_credentials()
            .contains("limiter:pw-limiter@")
    );
    let pong: String = redis::cmd("PING")
        .query(&mut server.connection().unwrap())
        .unwrap();
    assert_eq!(pong, "PONG");
    let default_user = format!("redis://:pw-default@127.0.0.1:{}", server.port());
    let pong: String = redis::cmd("PING")
        .query(
            &mut redis::Client::open(default_user)
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn a_cluster_serves_every_slot_across_its_masters() {
    let cluster = RedisCluster::start(3).unwrap();
    assert_eq!(cluster.len(), 3);
    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut c = client.get_connection().unwrap();
    let mut owners = std::collections::BTreeSet::new();
    for i in 0..30 {
        let key = format!("key-{i}");
        let _: () = c.set(&key, i).unwrap();
        let got: i64 = c.get(&key).unwrap();
        assert_eq!(got, i);
        owners.insert(cluster.master_of(&key).unwrap());
    }
    assert_eq!(owners.len(), 3, "keys spread over the three masters");
}

#[test]
fn a_replica_takes_over_when_its_master_stops() {
    let mut cluster = RedisCluster::start_with_replicas(3, 1).unwrap();
    assert_eq!(cluster.len(), 6);
    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut c = client.get_connection().unwrap();
    let _: () = c.set("failover-key", "kept").unwrap();
    // Let the replica catch up before its master goes.
    let master = cluster.master_of("failover-key").unwrap();
    let _: Value = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query(&mut cluster.node(master).unwrap().connection().unwrap())
        .unwrap();
    cluster.node_mut(master).unwrap().kill();
    cluster.wait_until_ok(Duration::from_secs(20)).unwrap();
    let new_master = cluster.master_of("failover-key").unwrap();
    assert_ne!(new_master, master);
    assert!(new_master >= cluster.masters(), "a replica was promoted");
    let got: String = cluster
        .node(new_master)
        .unwrap()
        .connection()
        .unwrap()
        .get("failover-key")
        .unwrap();
    assert_eq!(got, "kept");
}

#[test]
fn a_tls_terminator_serves_clients_that_trust_its_ca_and_requires_certificates_when_told() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = TestPki::generate("harness").unwrap();
    let other = TestPki::generate("harness-other").unwrap();
    let read = |path: std::path::PathBuf| std::fs::read(path).unwrap();
    let ping = |url: &str, ca: &TestPki, client: bool| -> redis::RedisResult<String> {
        let client_tls = client.then(|| redis::ClientTlsConfig {
            client_cert: read(ca.client_cert()),
            client_key: read(ca.client_key()),
        });
        let client = redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls,
                root_cert: Some(read(ca.ca_cert())),
            },
        )?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
        redis::cmd("PING").query(&mut connection)
    };

    let server = RedisServer::start_tls(ServerOptions::default(), &pki, ClientAuth::None).unwrap();
    let url = server.tls_url().unwrap();
    assert_eq!(ping(&url, &pki, false).unwrap(), "PONG");
    assert!(
        ping(&url, &other, false).is_err(),
        "another CA is not trusted"
    );
    let plain: String = redis::cmd("PING")
        .query(&mut server.connection().unwrap())
        .unwrap();
    assert_eq!(plain, "PONG", "the plain port stays open for the harness");

    let mutual =
        RedisServer::start_tls(ServerOptions::default(), &pki, ClientAuth::Required).unwrap();
    let url = mutual.tls_url().unwrap();
    assert_eq!(ping(&url, &pki, true).unwrap(), "PONG");
    assert!(ping(&url, &pki, false).is_err(), "no client certificate");
}
