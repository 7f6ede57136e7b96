//! The data directory: the controller's x25519 key, its self-signed TLS
//! certificate (whose SHA-256 fingerprint nodes pin), and the database path.
//!
//! ```text
//! DIR/controller.key   x25519 private key, base64 (0600)
//! DIR/tls-cert.pem     self-signed certificate for SNI "warren-controller"
//! DIR/tls-key.pem      its private key (0600)
//! DIR/controller.db    SQLite database (+ -wal, -shm), made 0640
//! ```
//!
//! A relay-only instance has a state directory of its own, with its own
//! key and certificate, and reads only the controller's database:
//!
//! ```text
//! STATE/relay.key      x25519 private key, base64 (0600)
//! STATE/tls-cert.pem   its own self-signed certificate
//! STATE/tls-key.pem    its private key (0600)
//! ```

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use warren_proto::NodePrivateKey;

/// The name the certificate is made for and nodes send as SNI.
pub const SERVER_NAME: &str = "warren-controller";

const KEY_FILE: &str = "controller.key";
const RELAY_KEY_FILE: &str = "relay.key";
const CERT_FILE: &str = "tls-cert.pem";
const CERT_KEY_FILE: &str = "tls-key.pem";
const DB_FILE: &str = "controller.db";

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("{path}: not a valid PEM certificate or key: {reason}")]
    BadPem { path: PathBuf, reason: String },
    #[error(
        "{present} exists but {missing} does not; refusing to make a new certificate \
         that nodes would not trust (restore the file or remove both)"
    )]
    HalfCertificate { present: PathBuf, missing: PathBuf },
    #[error("could not make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{dir} has no {missing}: not a controller's data directory (run `serve` on it first)")]
    NotAController { dir: PathBuf, missing: &'static str },
    #[error(
        "{dir} holds {found}: it is a controller's data directory, and a relay-only \
         instance keeps its own key and certificate in a state directory of its own"
    )]
    ControllersOwn { dir: PathBuf, found: &'static str },
}

/// What a controller or a relay-only instance is: keys, certificate and
/// where the database lives.
#[derive(Debug)]
pub struct Identity {
    /// The x25519 key the node's proof is made against: the controller's,
    /// or the relay-only instance's own.
    pub controller_key: NodePrivateKey,
    pub cert: CertificateDer<'static>,
    pub cert_key: PrivateKeyDer<'static>,
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub fingerprint: String,
    pub db_path: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 of a certificate's DER encoding, lowercase hex: what nodes pin.
pub use warren_proto::pinning::fingerprint;

/// Writes a file whole or not at all (temp file, fsync, rename, fsync dir),
/// with `mode`, so a crash on first start never leaves half a key.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(contents).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}

fn load_or_make_key(path: &Path) -> Result<NodePrivateKey, DataDirError> {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|e| DataDirError::BadKey {
            path: path.to_path_buf(),
            reason: format!("{e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = NodePrivateKey::generate();
            write_atomic(path, format!("{}\n", key.to_base64()).as_bytes(), 0o600)?;
            Ok(key)
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

fn load_or_make_cert(
    dir: &Path,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), DataDirError> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(CERT_KEY_FILE);
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {}
        (false, false) => {
            let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])?;
            // Key first: a crash between the two leaves a key without a
            // certificate, which the next start reports instead of guessing.
            write_atomic(
                &key_path,
                made.signing_key.serialize_pem().as_bytes(),
                0o600,
            )?;
            write_atomic(&cert_path, made.cert.pem().as_bytes(), 0o644)?;
        }
        (true, false) => {
            return Err(DataDirError::HalfCertificate {
                present: cert_path,
                missing: key_path,
            })
        }
        (false, true) => {
            return Err(DataDirError::HalfCertificate {
                present: key_path,
                missing: cert_path,
            })
        }
    }
    let bad = |path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls::pki_types::pem::Error| DataDirError::BadPem {
            path,
            reason: e.to_string(),
        }
    };
    let cert = CertificateDer::from_pem_file(&cert_path).map_err(bad(&cert_path))?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(bad(&key_path))?;
    Ok((cert, key))
}

fn make_private_dir(dir: &Path) -> Result<(), DataDirError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Makes an empty database file if there is none, and gives it mode 0640
/// (whatever the umask): SQLite gives its `-wal` and `-shm` files the
/// database's mode, so a relay-only instance running as another user in
/// the controller's group can read all three, while the keys stay 0600.
/// The directory, 0700 unless the operator opens it to that group, keeps
/// everyone else out.
fn make_database_file(path: &Path) -> Result<(), DataDirError> {
    match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o640)).map_err(io_err(path))?;
    // Left by an older controller (0600), they would keep the relay's
    // user out until SQLite made them anew.
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        match fs::set_permissions(&side, fs::Permissions::from_mode(0o640)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&side)(e)),
        }
    }
    Ok(())
}

/// Opens the data directory, making the directory (0700), the controller
/// key, the certificate and an empty database file on first use.
pub fn open(dir: &Path) -> Result<Identity, DataDirError> {
    let identity = open_keys(dir)?;
    make_database_file(&identity.db_path)?;
    Ok(identity)
}

/// [`open`] for a controller whose state is in PostgreSQL: the directory,
/// key and certificate, and no database file.
pub fn open_keys(dir: &Path) -> Result<Identity, DataDirError> {
    make_private_dir(dir)?;
    let controller_key = load_or_make_key(&dir.join(KEY_FILE))?;
    let (cert, cert_key) = load_or_make_cert(dir)?;
    let db_path = dir.join(DB_FILE);
    Ok(Identity {
        controller_key,
        fingerprint: fingerprint(&cert),
        cert,
        cert_key,
        db_path,
    })
}

/// Opens a relay-only instance: its own key and certificate in
/// `state_dir` (made on first use, like a controller's), and the database
/// of the controller whose data directory is `controller_dir`, which must
/// exist. It reads nothing else there: not the controller's key, not its
/// certificate's key.
pub fn open_relay(state_dir: &Path, controller_dir: &Path) -> Result<Identity, DataDirError> {
    let db_path = controller_dir.join(DB_FILE);
    if !db_path.exists() {
        return Err(DataDirError::NotAController {
            dir: controller_dir.to_path_buf(),
            missing: DB_FILE,
        });
    }
    for found in [KEY_FILE, DB_FILE] {
        if state_dir.join(found).exists() {
            return Err(DataDirError::ControllersOwn {
                dir: state_dir.to_path_buf(),
                found,
            });
        }
    }
    make_private_dir(state_dir)?;
    let relay_key = load_or_make_key(&state_dir.join(RELAY_KEY_FILE))?;
    let (cert, cert_key) = load_or_make_cert(state_dir)?;
    Ok(Identity {
        controller_key: relay_key,
        fingerprint: fingerprint(&cert),
        cert,
        cert_key,
        db_path,
    })
}

/// Reads the fingerprint of an existing data directory, making nothing.
pub fn read_fingerprint(dir: &Path) -> Result<String, DataDirError> {
    let path = dir.join(CERT_FILE);
    let cert = CertificateDer::from_pem_file(&path).map_err(|e| DataDirError::BadPem {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(fingerprint(&cert))
}

/// The database path in a data directory.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join(DB_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_open_makes_keys_and_later_opens_keep_them() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = open(&data).unwrap();
        assert_eq!(first.fingerprint.len(), 64);
        let mode = fs::metadata(data.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(data.join(CERT_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = open(&data).unwrap();
        assert_eq!(again.fingerprint, first.fingerprint);
        assert_eq!(
            again.controller_key.public_key(),
            first.controller_key.public_key()
        );
        assert_eq!(read_fingerprint(&data).unwrap(), first.fingerprint);
    }

    #[test]
    fn the_database_is_made_group_readable_and_the_keys_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        open(&data).unwrap();
        let mode = |file: &str| fs::metadata(data.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(DB_FILE), 0o640);
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(CERT_KEY_FILE), 0o600);
        // An older controller's 0600 side files are opened to the group.
        for side in ["controller.db-wal", "controller.db-shm"] {
            fs::write(data.join(side), b"").unwrap();
            fs::set_permissions(data.join(side), fs::Permissions::from_mode(0o600)).unwrap();
        }
        open(&data).unwrap();
        assert_eq!(mode("controller.db-wal"), 0o640);
        assert_eq!(mode("controller.db-shm"), 0o640);
    }

    #[test]
    fn a_relay_has_its_own_key_and_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let state = dir.path().join("relay");
        // Nothing to relay for without a controller's database.
        assert!(matches!(
            open_relay(&state, &data),
            Err(DataDirError::NotAController {
                missing: DB_FILE,
                ..
            })
        ));
        assert!(!state.exists(), "made nothing");
        let controller = open(&data).unwrap();
        let relay = open_relay(&state, &data).unwrap();
        assert_ne!(relay.fingerprint, controller.fingerprint);
        assert_ne!(
            relay.controller_key.public_key(),
            controller.controller_key.public_key()
        );
        assert_eq!(relay.db_path, controller.db_path);
        let mode = fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let again = open_relay(&state, &data).unwrap();
        assert_eq!(again.fingerprint, relay.fingerprint);
        assert_eq!(read_fingerprint(&state).unwrap(), relay.fingerprint);
        // The controller's own directory is never a relay's.
        assert!(matches!(
            open_relay(&data, &data),
            Err(DataDirError::ControllersOwn {
                found: KEY_FILE,
                ..
            })
        ));
    }

    #[test]
    fn a_lost_certificate_key_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path()).unwrap();
        fs::remove_file(dir.path().join(CERT_KEY_FILE)).unwrap();
        assert!(matches!(
            open(dir.path()),
            Err(DataDirError::HalfCertificate { .. })
        ));
    }
}
