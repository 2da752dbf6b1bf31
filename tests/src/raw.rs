//! A misbehaving client with valid credentials: wrong protocol, wrong
//! workspace, absurd frame lengths, garbage frames. The leader must refuse
//! or drop each without crashing.

use std::net::SocketAddr;
use std::time::Duration;

use hsfs_engine::{ClientId, WorkspaceId};
use hsfs_replication::tls::{self, Bundle};
use hsfs_replication::wire::{self, Hello, Limits, Open, ToWorker};

/// What the leader answered.
#[derive(Debug, Default)]
pub struct Answers {
    /// Refusal of a Hello with another protocol version.
    pub wrong_protocol: String,
    /// Refusal of a Hello for another workspace.
    pub wrong_workspace: String,
}

async fn connect(ep: &quinn::Endpoint, leader: SocketAddr) -> quinn::Connection {
    ep.connect(leader, tls::LEADER_NAME)
        .expect("connect")
        .await
        .expect("handshake")
}

async fn hello(conn: &quinn::Connection, h: Hello) -> String {
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    wire::write(&mut send, &Open::Control(h))
        .await
        .expect("write hello");
    match wire::read::<ToWorker>(&mut recv, 1 << 20).await {
        Ok(ToWorker::Refused { reason }) => reason,
        other => format!("not refused: {other:?}"),
    }
}

/// Runs every misbehaviour against `leader` and returns its answers.
pub fn misbehave(leader: SocketAddr, bundle: &Bundle) -> Answers {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (id, ca) = bundle.identity().expect("identity");
        let mut ep =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
        ep.set_default_client_config(tls::client_config(&id, &ca).expect("config"));
        let ws = bundle.workspace_id().expect("workspace");
        let base = Hello {
            protocol: wire::PROTOCOL.into(),
            workspace: ws,
            worker: "raw".into(),
            client: ClientId([0xee; 16]),
            applied: 0,
            root: [0; 32],
            features: vec![],
            limits: Limits::default(),
        };
        let mut a = Answers::default();
        let c = connect(&ep, leader).await;
        a.wrong_protocol = hello(
            &c,
            Hello {
                protocol: "hypersync/0".into(),
                ..base.clone()
            },
        )
        .await;
        let c = connect(&ep, leader).await;
        a.wrong_workspace = hello(
            &c,
            Hello {
                workspace: WorkspaceId([0xab; 16]),
                ..base.clone()
            },
        )
        .await;
        // An absurd frame length, then a garbage frame, on fresh
        // connections: the leader closes them and carries on.
        for bytes in [
            vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            vec![5, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0x99],
        ] {
            let c = connect(&ep, leader).await;
            let (mut send, _recv) = c.open_bi().await.expect("stream");
            let _ = send.write_all(&bytes).await;
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(5), c.closed()).await;
        }
        // And an intent stream on a connection without a handshake.
        let c = connect(&ep, leader).await;
        let (mut send, _recv) = c.open_bi().await.expect("stream");
        let _ = wire::write(&mut send, &Open::Subscribe { from: 1 }).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), c.closed()).await;
        ep.close(quinn::VarInt::from_u32(0), b"done");
        a
    })
}
