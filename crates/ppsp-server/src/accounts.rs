//! The accounts file used for SASL PLAIN and HTTP Digest.
//!
//! Format: UTF-8 text, one account per line, `PEER_ID HASH [DIGEST]`, where `HASH` is an
//! argon2id password hash in PHC string form (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`)
//! and the optional `DIGEST` is `digest-sha256:REALM:HEX`, the hex SHA-256 of
//! `PEER_ID:REALM:password` that HTTP Digest (RFC 7616 §3.4.2, `H(A1)`) checks responses
//! against. Blank lines and lines starting with `#` are ignored; files without digests (the
//! earlier format) read unchanged. The file never holds a password. The argon2id hash is
//! salted and slow; the Digest value is not (RFC 7616 needs `H(A1)` itself), so it lets
//! whoever reads the file authenticate with Digest in that realm: it is only written when
//! asked for, and the file is kept at mode 0600. [`Accounts::save`] rewrites the file
//! atomically (a temporary file in the same directory, flushed to disk, then renamed over
//! the old one) with mode 0600 on Unix.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::TryRngCore;

use crate::error::ServerError;

/// Accounts keyed by PeerID, each with its argon2id PHC hash and optional Digest secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    entries: BTreeMap<String, Account>,
}

/// One account's stored secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Account {
    /// argon2id PHC string, for SASL PLAIN.
    hash: String,
    /// `H(PEER_ID:realm:password)` with SHA-256, for HTTP Digest in `realm`.
    digest: Option<DigestSecret>,
}

/// The HTTP Digest `H(A1)` of an account for one realm.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DigestSecret {
    realm: String,
    ha1: [u8; 32],
}

/// Prefix of the optional third field.
const DIGEST_PREFIX: &str = "digest-sha256:";

/// True for a realm the accounts file and the `WWW-Authenticate` header can carry as is:
/// printable ASCII without whitespace, quotes, backslashes or colons.
pub(crate) fn valid_realm(realm: &str) -> bool {
    !realm.is_empty()
        && realm.len() <= 128
        && realm
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b':'))
}

/// Lower-case hex of SHA-256 over `text`, the `H` of RFC 7616 §3.4 for SHA-256.
pub(crate) fn sha256_hex(text: &[u8]) -> String {
    to_hex(ring::digest::digest(&ring::digest::SHA256, text).as_ref())
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn from_hex_32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn digest_ha1(peer_id: &str, realm: &str, password: &[u8]) -> [u8; 32] {
    let mut input = Vec::with_capacity(peer_id.len() + realm.len() + password.len() + 2);
    input.extend_from_slice(peer_id.as_bytes());
    input.push(b':');
    input.extend_from_slice(realm.as_bytes());
    input.push(b':');
    input.extend_from_slice(password);
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &input).as_ref());
    out
}

/// A hash of a password nobody has, checked when an unknown account is tried, so that
/// unknown and known accounts take the same time to refuse.
const DECOY_PASSWORD: &[u8] = b"decoy password for unknown accounts";

impl Accounts {
    /// An empty set of accounts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads an accounts file.
    ///
    /// # Errors
    /// [`ServerError::Accounts`] when the file cannot be read, a line is not
    /// `PEER_ID HASH`, a PeerID is invalid or listed twice, or a hash is not an argon2 PHC
    /// string.
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|err| accounts_error(path, err))?;
        Self::parse(&text).map_err(|reason| ServerError::Accounts {
            path: path.to_owned(),
            reason,
        })
    }

    /// Reads an accounts file, or returns no accounts when the file does not exist yet.
    ///
    /// # Errors
    /// As [`Accounts::load`], except for a missing file.
    pub fn load_or_empty(path: &Path) -> Result<Self, ServerError> {
        match std::fs::metadata(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            _ => Self::load(path),
        }
    }

    /// Parses the file's text.
    fn parse(text: &str) -> Result<Self, String> {
        let mut entries = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let lineno = number + 1;
            let mut fields = line.split_whitespace();
            let (Some(peer_id), Some(hash), digest, None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(format!("line {lineno}: expected `PEER_ID HASH [DIGEST]`"));
            };
            let digest = digest
                .map(|field| {
                    parse_digest(field).ok_or_else(|| {
                        format!("line {lineno}: expected `{DIGEST_PREFIX}REALM:64 HEX DIGITS`")
                    })
                })
                .transpose()?;
            ppsp_proto::PeerId::new(peer_id)
                .map_err(|err| format!("line {lineno}: PeerID: {err}"))?;
            let parsed =
                PasswordHash::new(hash).map_err(|err| format!("line {lineno}: hash: {err}"))?;
            if Algorithm::try_from(parsed.algorithm).is_err() {
                return Err(format!("line {lineno}: not an argon2 hash"));
            }
            let account = Account {
                hash: hash.to_owned(),
                digest,
            };
            if entries.insert(peer_id.to_owned(), account).is_some() {
                return Err(format!("line {lineno}: {peer_id} listed twice"));
            }
        }
        Ok(Self { entries })
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `peer_id` has an account.
    pub fn contains(&self, peer_id: &str) -> bool {
        self.entries.contains_key(peer_id)
    }

    /// The PeerIDs with accounts, sorted.
    pub fn peer_ids(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Adds or replaces an account, hashing `password` with argon2id and the crate's default
    /// cost (19 MiB, 2 passes).
    ///
    /// # Errors
    /// [`ServerError::PasswordHash`] if hashing fails.
    pub fn set_password(
        &mut self,
        peer_id: &ppsp_proto::PeerId,
        password: &[u8],
    ) -> Result<(), ServerError> {
        self.set_password_with(peer_id, password, Params::default())
    }

    /// As [`Accounts::set_password`], with explicit argon2 cost parameters.
    ///
    /// # Errors
    /// [`ServerError::PasswordHash`] if hashing fails.
    pub fn set_password_with(
        &mut self,
        peer_id: &ppsp_proto::PeerId,
        password: &[u8],
        params: Params,
    ) -> Result<(), ServerError> {
        let hash = hash_password(password, params)?;
        // A new password makes any stored Digest secret stale, so it goes too.
        self.entries
            .insert(peer_id.as_str().to_owned(), Account { hash, digest: None });
        Ok(())
    }

    /// Stores the HTTP Digest secret (`H(PEER_ID:realm:password)`, SHA-256) of an existing
    /// account, replacing any earlier one; `password` must be the account's password.
    ///
    /// # Errors
    /// [`ServerError::Accounts`] (with an empty path) when the account does not exist, the
    /// password is not its password, or the realm is not a plain token (see `valid_realm`).
    pub fn set_digest(
        &mut self,
        peer_id: &ppsp_proto::PeerId,
        realm: &str,
        password: &[u8],
    ) -> Result<(), ServerError> {
        let refuse = |reason: String| ServerError::Accounts {
            path: PathBuf::new(),
            reason,
        };
        if !valid_realm(realm) {
            return Err(refuse(format!(
                "realm {realm:?}: printable ASCII without spaces, quotes, backslashes or colons"
            )));
        }
        let Some(account) = self.entries.get_mut(peer_id.as_str()) else {
            return Err(refuse(format!("no account {peer_id}")));
        };
        if !verify_hash(&account.hash, password) {
            return Err(refuse(format!("the password is not {peer_id}'s")));
        }
        account.digest = Some(DigestSecret {
            realm: realm.to_owned(),
            ha1: digest_ha1(peer_id.as_str(), realm, password),
        });
        Ok(())
    }

    /// The Digest `H(A1)` of `peer_id` for `realm`, when the file has one.
    pub(crate) fn digest_secret(&self, peer_id: &str, realm: &str) -> Option<[u8; 32]> {
        self.entries
            .get(peer_id)
            .and_then(|account| account.digest.as_ref())
            .filter(|digest| digest.realm == realm)
            .map(|digest| digest.ha1)
    }

    /// Removes an account; returns whether it existed.
    pub fn remove(&mut self, peer_id: &str) -> bool {
        self.entries.remove(peer_id).is_some()
    }

    /// Checks `password` for the account `peer_id`. Unknown accounts take as long as wrong
    /// passwords, so timing does not reveal which accounts exist.
    pub fn verify(&self, peer_id: &str, password: &[u8]) -> bool {
        match self.entries.get(peer_id) {
            Some(account) => verify_hash(&account.hash, password),
            None => {
                let _ = verify_hash(decoy_hash(), password);
                false
            }
        }
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut out = String::from(
            "# ppsp accounts file: one account per line,\n\
             # `PEER_ID ARGON2ID_PHC_HASH [digest-sha256:REALM:HEX]`.\n\
             # Written by `ppsp accounts add`; passwords are never stored.\n",
        );
        for (peer_id, account) in &self.entries {
            let _ = write!(out, "{peer_id} {}", account.hash);
            if let Some(digest) = &account.digest {
                let _ = write!(
                    out,
                    " {DIGEST_PREFIX}{}:{}",
                    digest.realm,
                    to_hex(&digest.ha1)
                );
            }
            out.push('\n');
        }
        out
    }

    /// Writes the file atomically: a temporary file next to it is written, flushed to disk
    /// and renamed over `path`, so readers see the old or the new file, never half of one.
    ///
    /// # Errors
    /// [`ServerError::Accounts`] when the temporary file cannot be written or renamed.
    pub fn save(&self, path: &Path) -> Result<(), ServerError> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "accounts".to_owned());
        let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
        let result = (|| -> std::io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp)?;
            file.write_all(self.to_text().as_bytes())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, path)?;
            // Make the rename itself durable.
            if let Ok(dir) = std::fs::File::open(&dir) {
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        if let Err(err) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(accounts_error(path, err));
        }
        Ok(())
    }
}

fn parse_digest(field: &str) -> Option<DigestSecret> {
    let (realm, hex) = field.strip_prefix(DIGEST_PREFIX)?.rsplit_once(':')?;
    if !valid_realm(realm) {
        return None;
    }
    Some(DigestSecret {
        realm: realm.to_owned(),
        ha1: from_hex_32(hex)?,
    })
}

fn accounts_error(path: &Path, err: std::io::Error) -> ServerError {
    ServerError::Accounts {
        path: path.to_owned(),
        reason: err.to_string(),
    }
}

fn hash_password(password: &[u8], params: Params) -> Result<String, ServerError> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|err| ServerError::PasswordHash(err.to_string()))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|err| ServerError::PasswordHash(err.to_string()))?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    hasher
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| ServerError::PasswordHash(err.to_string()))
}

/// Verifies against a PHC string; the cost parameters come from the string itself.
fn verify_hash(hash: &str, password: &[u8]) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|parsed| Argon2::default().verify_password(password, &parsed).is_ok())
}

fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(DECOY_PASSWORD, Params::default()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Params {
        Params::new(256, 1, 1, None).expect("params")
    }

    #[test]
    fn round_trip_through_file() {
        let dir = std::env::temp_dir().join(format!("ppsp-accounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("accounts");
        let mut accounts = Accounts::load_or_empty(&path).expect("empty");
        let alice = ppsp_proto::PeerId::new("alice").expect("id");
        accounts
            .set_password_with(&alice, b"secret", cheap())
            .expect("hash");
        accounts.save(&path).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("secret"));
        assert!(text.contains("$argon2id$"));
        let loaded = Accounts::load(&path).expect("load");
        assert_eq!(loaded, accounts);
        assert!(loaded.verify("alice", b"secret"));
        assert!(!loaded.verify("alice", b"Secret"));
        assert!(!loaded.verify("bob", b"secret"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn digest_secrets_round_trip_and_follow_the_password() {
        let alice = ppsp_proto::PeerId::new("alice").expect("id");
        let mut accounts = Accounts::new();
        accounts
            .set_password_with(&alice, b"secret", cheap())
            .expect("hash");
        assert!(accounts.set_digest(&alice, "ppsp", b"wrong").is_err());
        assert!(
            accounts
                .set_digest(&alice, "with space", b"secret")
                .is_err()
        );
        assert!(
            accounts
                .set_digest(&ppsp_proto::PeerId::new("bob").expect("id"), "ppsp", b"x")
                .is_err()
        );
        accounts
            .set_digest(&alice, "ppsp", b"secret")
            .expect("digest");
        // RFC 7616 §3.4.2: H(A1) = SHA-256("alice:ppsp:secret").
        let expected = sha256_hex(b"alice:ppsp:secret");
        assert_eq!(
            accounts.digest_secret("alice", "ppsp").map(|h| to_hex(&h)),
            Some(expected.clone())
        );
        assert_eq!(accounts.digest_secret("alice", "other"), None);
        let text = accounts.to_text();
        assert!(text.contains(&format!("digest-sha256:ppsp:{expected}")));
        assert!(!text.contains("secret\n"));
        assert_eq!(Accounts::parse(&text).expect("parses"), accounts);
        accounts
            .set_password_with(&alice, b"new", cheap())
            .expect("hash");
        assert_eq!(
            accounts.digest_secret("alice", "ppsp"),
            None,
            "stale digest dropped"
        );
        let phc = "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
        assert!(Accounts::parse(&format!("bob {phc}\n")).is_ok());
        assert!(Accounts::parse(&format!("bob {phc} digest-sha256:ppsp:abc\n")).is_err());
        assert!(Accounts::parse(&format!("bob {phc} sha1:ppsp:{expected}\n")).is_err());
    }

    #[test]
    fn malformed_files_are_refused() {
        assert!(Accounts::parse("alice\n").is_err());
        assert!(Accounts::parse("alice notahash\n").is_err());
        assert!(
            Accounts::parse(
                "alice $argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo extra\n"
            )
            .is_err()
        );
        assert!(
            Accounts::parse("# only a comment\n\n")
                .expect("ok")
                .is_empty()
        );
    }
}
