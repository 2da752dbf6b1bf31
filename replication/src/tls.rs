//! Workspace credentials and mutual-TLS configuration.
//!
//! `hsfs init` makes a workspace CA (`STATE_DIR/tls/ca.{pem,key}`) and the
//! leader's certificate (`leader.{pem,key}`, name [`LEADER_NAME`]).
//! `hsfs join` issues a worker certificate signed by that CA and writes it,
//! with the CA certificate and the workspace id, into a bundle file. Both
//! sides only accept peers whose certificate chains to the workspace CA:
//! a worker of another workspace fails the TLS handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hsfs_engine::WorkspaceId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::wire::PROTOCOL;

/// DNS name in the leader certificate; workers verify it whatever address
/// they dial.
pub const LEADER_NAME: &str = "hsfs-leader";

/// Credential errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A PEM block did not parse.
    #[error("{what}: not a valid PEM {kind}")]
    Pem {
        /// File or field.
        what: String,
        /// Expected content.
        kind: &'static str,
    },
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// Bundle syntax.
    #[error("bundle {path}: {message}")]
    Bundle {
        /// Path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Client verifier setup.
    #[error("client verifier: {0}")]
    Verifier(String),
    /// QUIC crypto setup.
    #[error("QUIC crypto: {0}")]
    Quic(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, data: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(data.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// PEM certificate and key of one party.
#[derive(Clone)]
pub struct Identity {
    /// Certificate chain (leaf first).
    pub certs: Vec<CertificateDer<'static>>,
    /// Private key.
    pub key: Arc<PrivateKeyDer<'static>>,
}

fn parse_certs(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem {
            what: what.into(),
            kind: "certificate",
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.into(),
            kind: "certificate",
        });
    }
    Ok(certs)
}

fn parse_key(what: &str, pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| TlsError::Pem {
        what: what.into(),
        kind: "private key",
    })
}

/// The workspace CA, loaded from a leader state directory.
pub struct WorkspaceCa {
    /// CA certificate, PEM.
    pub cert_pem: String,
    workspace: WorkspaceId,
    key: KeyPair,
}

/// The CA's parameters, a pure function of the workspace: issued
/// certificates name it as their issuer.
fn ca_params(workspace: WorkspaceId) -> Result<CertificateParams, TlsError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, format!("hsfs workspace {workspace} CA"));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

fn tls_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("tls")
}

impl WorkspaceCa {
    /// Creates the CA and the leader certificate in `STATE_DIR/tls`.
    pub fn create(state_dir: &Path, workspace: WorkspaceId) -> Result<WorkspaceCa, TlsError> {
        let dir = tls_dir(state_dir);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let key = KeyPair::generate()?;
        let cert = ca_params(workspace)?.self_signed(&key)?;
        write_private(&dir.join("ca.key"), &key.serialize_pem())?;
        let cert_pem = cert.pem();
        std::fs::write(dir.join("ca.pem"), &cert_pem).map_err(io(&dir))?;
        let ca = WorkspaceCa {
            cert_pem,
            workspace,
            key,
        };
        let (leaf, leaf_key) =
            ca.issue(LEADER_NAME, &format!("hsfs leader of {workspace}"), true)?;
        std::fs::write(dir.join("leader.pem"), leaf).map_err(io(&dir))?;
        write_private(&dir.join("leader.key"), &leaf_key)?;
        Ok(ca)
    }

    /// Loads the CA of a leader state directory.
    pub fn load(state_dir: &Path, workspace: WorkspaceId) -> Result<WorkspaceCa, TlsError> {
        let dir = tls_dir(state_dir);
        let cert_pem =
            std::fs::read_to_string(dir.join("ca.pem")).map_err(io(&dir.join("ca.pem")))?;
        let key_pem =
            std::fs::read_to_string(dir.join("ca.key")).map_err(io(&dir.join("ca.key")))?;
        let key = KeyPair::from_pem(&key_pem)?;
        Ok(WorkspaceCa {
            cert_pem,
            workspace,
            key,
        })
    }

    /// Issues a certificate for `name`; returns (cert PEM, key PEM).
    fn issue(
        &self,
        name: &str,
        common_name: &str,
        server: bool,
    ) -> Result<(String, String), TlsError> {
        let params = ca_params(self.workspace)?;
        let issuer = Issuer::from_params(&params, &self.key);
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec![name.to_string()])?;
        p.distinguished_name.push(DnType::CommonName, common_name);
        p.use_authority_key_identifier_extension = true;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = p.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a worker's credentials.
    pub fn issue_worker(&self, worker: &str, leader: Option<String>) -> Result<Bundle, TlsError> {
        let (cert, key) = self.issue(
            &format!("hsfs-worker-{worker}"),
            &format!("hsfs worker {worker}"),
            false,
        )?;
        Ok(Bundle {
            workspace: self.workspace.to_string(),
            worker: worker.to_string(),
            leader,
            ca: self.cert_pem.clone(),
            cert,
            key,
        })
    }
}

/// The leader's identity and the CA it trusts.
pub fn leader_identity(
    state_dir: &Path,
) -> Result<(Identity, Vec<CertificateDer<'static>>), TlsError> {
    let dir = tls_dir(state_dir);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(io(&dir.join(f)));
    let ca = parse_certs("ca.pem", &read("ca.pem")?)?;
    let certs = parse_certs("leader.pem", &read("leader.pem")?)?;
    let key = parse_key("leader.key", &read("leader.key")?)?;
    Ok((
        Identity {
            certs,
            key: Arc::new(key),
        },
        ca,
    ))
}

/// A worker's credentials: what `hsfs join` writes and `hsfs mount
/// --join` reads (TOML).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bundle {
    /// Workspace id (hex).
    pub workspace: String,
    /// Worker name.
    pub worker: String,
    /// Leader address, if known at join time.
    pub leader: Option<String>,
    /// Workspace CA certificate (PEM).
    pub ca: String,
    /// Worker certificate (PEM).
    pub cert: String,
    /// Worker private key (PEM).
    pub key: String,
}

impl Bundle {
    /// Writes the bundle (mode 0600: it holds a private key).
    pub fn save(&self, path: &Path) -> Result<(), TlsError> {
        let text = toml::to_string(self).map_err(|e| TlsError::Bundle {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        write_private(path, &text)
    }

    /// Reads a bundle.
    pub fn load(path: &Path) -> Result<Bundle, TlsError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        toml::from_str(&text).map_err(|e| TlsError::Bundle {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The workspace id it is for.
    pub fn workspace_id(&self) -> Result<WorkspaceId, TlsError> {
        hex::decode(&self.workspace)
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(WorkspaceId)
            .ok_or_else(|| TlsError::Bundle {
                path: PathBuf::new(),
                message: format!("bad workspace id {:?}", self.workspace),
            })
    }

    /// The worker's identity and the CA it trusts.
    pub fn identity(&self) -> Result<(Identity, Vec<CertificateDer<'static>>), TlsError> {
        Ok((
            Identity {
                certs: parse_certs("bundle cert", &self.cert)?,
                key: Arc::new(parse_key("bundle key", &self.key)?),
            },
            parse_certs("bundle ca", &self.ca)?,
        ))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &[CertificateDer<'static>]) -> Result<rustls::RootCertStore, TlsError> {
    let mut r = rustls::RootCertStore::empty();
    for c in ca {
        r.add(c.clone())?;
    }
    Ok(r)
}

/// QUIC server config: TLS 1.3, ALPN "hypersync/1", client certificates
/// required and verified against the workspace CA.
pub fn server_config(
    id: &Identity,
    ca: &[CertificateDer<'static>],
) -> Result<quinn::ServerConfig, TlsError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca)?),
        provider(),
    )
    .build()
    .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.certs.clone(), id.key.clone_key())?;
    cfg.alpn_protocols = vec![PROTOCOL.as_bytes().to_vec()];
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(cfg)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(quic));
    sc.transport_config(Arc::new(transport()));
    Ok(sc)
}

/// QUIC client config: trusts only the workspace CA and presents the
/// worker certificate.
pub fn client_config(
    id: &Identity,
    ca: &[CertificateDer<'static>],
) -> Result<quinn::ClientConfig, TlsError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(id.certs.clone(), id.key.clone_key())?;
    cfg.alpn_protocols = vec![PROTOCOL.as_bytes().to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(cfg)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut cc = quinn::ClientConfig::new(Arc::new(quic));
    cc.transport_config(Arc::new(transport()));
    Ok(cc)
}

/// Transport settings: keep-alives well inside the idle timeout, so a
/// silent peer is noticed within [`IDLE_TIMEOUT_MS`].
pub fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(IDLE_TIMEOUT_MS).into()));
    t.keep_alive_interval(Some(std::time::Duration::from_millis(200)));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(4096));
    t
}

/// QUIC idle timeout: a connection with no packet for this long is dead.
pub const IDLE_TIMEOUT_MS: u32 = 3000;
