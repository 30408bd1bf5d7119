//! PKCS#11 signing backend: keys generated non-extractable on a token (an HSM, a smart card,
//! or SoftHSM2 for testing); signing happens inside the token.
//!
//! A key is named by a reference in the style of RFC 7512, `pkcs11:token=LABEL;object=LABEL`
//! (values may be percent-encoded). The PKCS#11 module comes from `RAMPART_PKCS11_MODULE`
//! (default: Debian's SoftHSM2 at `/usr/lib/softhsm/libsofthsm2.so`) and the user PIN from
//! `RAMPART_PKCS11_PIN`.
//!
//! Supported schemes: `ed25519` (`CKK_EC_EDWARDS`, signed with `CKM_EDDSA`) and
//! `ecdsa-sha2-nistp256` (`CKK_EC` on P-256, signed with `CKM_ECDSA` over a SHA-256 digest
//! computed here; the token's r||s is re-encoded as DER for TUF). ML-DSA-65 keys are not
//! handled by this backend (SoftHSM2 2.6 and most deployed tokens have no ML-DSA mechanism):
//! keep those in the file backend.
//!
//! A PKCS#11 module may be initialised only once per process, so every module is loaded and
//! initialised once and shared by all signers (see [`Pkcs11Signer`]). Token operations on one
//! module are serialised: each opens a session, logs in, works and closes the session again,
//! so no login outlives an operation.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rampart_core::keys::p256_fixed_to_der;
use rampart_core::{Key, Scheme};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{SignError, Signer};

/// Environment variable naming the PKCS#11 module (shared library) to load.
pub const MODULE_ENV: &str = "RAMPART_PKCS11_MODULE";
/// Environment variable holding the token's user PIN.
pub const PIN_ENV: &str = "RAMPART_PKCS11_PIN";
/// The module used when [`MODULE_ENV`] is unset: SoftHSM2 as Debian installs it.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

// CKA_EC_PARAMS encodings (DER).
/// namedCurve OID 1.2.840.10045.3.1.7 (prime256v1 / secp256r1).
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// OID 1.3.101.112 (id-Ed25519).
const ED25519_OID_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// PrintableString "edwards25519" (the PKCS#11 3.0 curve-name form).
const ED25519_NAME_PARAMS: &[u8] = &[
    0x13, 0x0c, b'e', b'd', b'w', b'a', b'r', b'd', b's', b'2', b'5', b'5', b'1', b'9',
];

// ---------------------------------------------------------------------------------------------
// Module configuration
// ---------------------------------------------------------------------------------------------

/// Which PKCS#11 module to load and the user PIN to log in with.
#[derive(Clone)]
pub struct ModuleConfig {
    pub module_path: PathBuf,
    pub pin: String,
}

impl fmt::Debug for ModuleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleConfig")
            .field("module_path", &self.module_path)
            .field("pin", &"<redacted>")
            .finish()
    }
}

impl ModuleConfig {
    /// Reads the module path from `RAMPART_PKCS11_MODULE` (default [`DEFAULT_MODULE`]) and the
    /// PIN from `RAMPART_PKCS11_PIN` (required).
    pub fn from_env() -> Result<Self, SignError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SignError> {
        let from_env = get(MODULE_ENV).filter(|v| !v.is_empty());
        let module_path = PathBuf::from(from_env.as_deref().unwrap_or(DEFAULT_MODULE));
        if !module_path.is_file() {
            let origin = if from_env.is_some() {
                format!("named by {MODULE_ENV}")
            } else {
                format!("the default, {MODULE_ENV} is unset")
            };
            return Err(SignError::Pkcs11(format!(
                "PKCS#11 module {} ({origin}) does not exist; set {MODULE_ENV} to your token's \
                 PKCS#11 library, or install SoftHSM2 (Debian package softhsm2) for a software token",
                module_path.display()
            )));
        }
        let pin = match get(PIN_ENV) {
            Some(pin) if !pin.is_empty() => pin,
            _ => {
                return Err(SignError::Pkcs11(format!(
                    "no token PIN: set {PIN_ENV} to the user PIN of the token"
                )));
            }
        };
        Ok(ModuleConfig { module_path, pin })
    }
}

// ---------------------------------------------------------------------------------------------
// Key references
// ---------------------------------------------------------------------------------------------

/// A key on a token: the token's label and the label (CKA_LABEL) of the key pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKeyRef {
    pub token: String,
    pub object: String,
}

impl TokenKeyRef {
    /// Parses the attribute list of a PKCS#11 URI (RFC 7512 path part):
    /// `token=LABEL;object=LABEL`, with or without the leading `pkcs11:`. Values may be
    /// percent-encoded. `type=private` / `type=public` is accepted and ignored (both halves
    /// of the key pair are used).
    pub fn parse(s: &str) -> Result<Self, SignError> {
        let body = s.strip_prefix("pkcs11:").unwrap_or(s);
        let bad = |why: String| SignError::BadReference(format!("pkcs11:{body} ({why})"));
        if body.contains('?') {
            return Err(bad(format!(
                "query attributes such as pin-value or module-path are not accepted; the PIN \
                 comes from {PIN_ENV} and the module from {MODULE_ENV}"
            )));
        }
        let mut token = None;
        let mut object = None;
        for part in body.split(';').filter(|p| !p.is_empty()) {
            let Some((name, raw)) = part.split_once('=') else {
                return Err(bad(format!(
                    "attribute {part} has no value; write NAME=VALUE"
                )));
            };
            let value = percent_decode(raw).map_err(&bad)?;
            let slot = match name {
                "token" => &mut token,
                "object" => &mut object,
                "type" => {
                    if value != "private" && value != "public" {
                        return Err(bad(format!(
                            "type={value} does not name a key; use type=private or leave it out"
                        )));
                    }
                    continue;
                }
                other => {
                    return Err(bad(format!(
                        "unknown attribute {other}; only token=, object= (and type=private) are \
                         understood"
                    )));
                }
            };
            if slot.is_some() {
                return Err(bad(format!("attribute {name} is given twice")));
            }
            if value.is_empty() {
                return Err(bad(format!("attribute {name} is empty")));
            }
            *slot = Some(value);
        }
        match (token, object) {
            (Some(token), Some(object)) => Ok(TokenKeyRef { token, object }),
            (None, _) => Err(bad("missing token=LABEL (the label of the token)".into())),
            (_, None) => Err(bad(
                "missing object=LABEL (the label of the key on the token)".into(),
            )),
        }
    }
}

impl fmt::Display for TokenKeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pkcs11:token={};object={}",
            percent_encode(&self.token),
            percent_encode(&self.object)
        )
    }
}

fn percent_decode(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    format!("bad percent escape in {raw}; write %XX with two hex digits")
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{raw} does not decode to UTF-8"))
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!$'()*+,=&".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Process-wide module registry
// ---------------------------------------------------------------------------------------------

/// A loaded and initialised PKCS#11 module.
struct Module {
    path: PathBuf,
    ctx: Pkcs11,
    /// Serialises token operations on this module (login state is shared by all sessions of
    /// the process, so one operation's logout must not cut another short).
    ops: Mutex<()>,
}

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();

/// Loads and initialises the module at `path`, once per process.
fn module(path: &Path) -> Result<Arc<Module>, SignError> {
    if !path.is_file() {
        return Err(SignError::Pkcs11(format!(
            "PKCS#11 module {} does not exist; set {MODULE_ENV} to your token's PKCS#11 library, \
             or install SoftHSM2 (Debian package softhsm2) for a software token",
            path.display()
        )));
    }
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut map = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(m) = map.get(&key) {
        return Ok(Arc::clone(m));
    }
    let ctx = Pkcs11::new(&key).map_err(|e| {
        SignError::Pkcs11(format!(
            "cannot load PKCS#11 module {}: {e}; check that {MODULE_ENV} names a PKCS#11 library",
            path.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Already initialised by other code in this process: the context is still usable.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(SignError::Pkcs11(format!(
                "cannot initialise PKCS#11 module {}: {e} (for SoftHSM2, check that \
                 SOFTHSM2_CONF names a readable config whose directories.tokendir exists)",
                path.display()
            )));
        }
    }
    let m = Arc::new(Module {
        path: path.to_path_buf(),
        ctx,
        ops: Mutex::new(()),
    });
    map.insert(key, Arc::clone(&m));
    Ok(m)
}

fn ck(what: impl fmt::Display) -> impl FnOnce(CkError) -> SignError {
    move |e| SignError::Pkcs11(format!("{what}: {e}"))
}

impl Module {
    /// Finds the slot holding the initialised token labelled `label`.
    fn find_token(&self, label: &str) -> Result<Slot, SignError> {
        let slots = self
            .ctx
            .get_slots_with_token()
            .map_err(ck(format!("listing slots of {}", self.path.display())))?;
        let mut found = Vec::new();
        let mut labels = Vec::new();
        for slot in slots {
            let Ok(info) = self.ctx.get_token_info(slot) else {
                continue;
            };
            if !info.token_initialized() {
                continue;
            }
            if info.label() == label {
                found.push((slot, info.serial_number().to_string()));
            }
            labels.push(info.label().to_string());
        }
        match found.as_slice() {
            [(slot, _)] => Ok(*slot),
            [] => {
                let present = if labels.is_empty() {
                    "none".to_string()
                } else {
                    labels.join(", ")
                };
                Err(SignError::Pkcs11(format!(
                    "no token labelled {label:?} in PKCS#11 module {}; tokens present: {present}. \
                     Fix the token= part of the key reference, or initialise the token (SoftHSM2: \
                     softhsm2-util --init-token --free --label {label})",
                    self.path.display()
                )))
            }
            many => Err(SignError::Pkcs11(format!(
                "{} tokens are labelled {label:?} in {} (serial numbers {}); relabel all but one",
                many.len(),
                self.path.display(),
                many.iter()
                    .map(|(_, s)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Opens a session on the token labelled `token` and logs in as the user.
    fn session(&self, token: &str, pin: &AuthPin, rw: bool) -> Result<TokenSession<'_>, SignError> {
        let ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = self.find_token(token)?;
        let opened = if rw {
            self.ctx.open_rw_session(slot)
        } else {
            self.ctx.open_ro_session(slot)
        };
        let session = opened.map_err(ck(format!("opening a session on token {token:?}")))?;
        match session.login(UserType::User, Some(pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(rv, _)) => return Err(login_error(token, rv)),
            Err(e) => return Err(ck(format!("logging in to token {token:?}"))(e)),
        }
        Ok(TokenSession {
            session,
            slot,
            token: token.to_string(),
            module: self,
            _ops: ops,
        })
    }
}

fn login_error(token: &str, rv: RvError) -> SignError {
    SignError::Pkcs11(match rv {
        RvError::PinIncorrect => format!(
            "wrong PIN for token {token:?}: the token refused the user PIN; check {PIN_ENV} \
             (repeated failures may lock the token)"
        ),
        RvError::PinLocked => format!(
            "the user PIN of token {token:?} is locked after too many failures; unlock it with \
             the security officer PIN"
        ),
        RvError::PinExpired => {
            format!("the user PIN of token {token:?} has expired; change it with your token's tool")
        }
        RvError::PinLenRange | RvError::PinInvalid => format!(
            "the PIN in {PIN_ENV} has a length or characters token {token:?} does not accept"
        ),
        RvError::UserPinNotInitialized => format!(
            "token {token:?} has no user PIN yet; set one (SoftHSM2: softhsm2-util --init-token \
             ... --pin PIN) and put it in {PIN_ENV}"
        ),
        other => format!("logging in to token {token:?} failed: {other}"),
    })
}

/// A logged-in session on one token, holding the module's operation lock.
struct TokenSession<'m> {
    // Field order matters: the session closes before the lock is released.
    session: Session,
    slot: Slot,
    token: String,
    module: &'m Module,
    _ops: MutexGuard<'m, ()>,
}

/// What is needed to use one key pair of a token.
struct KeyPair {
    private: ObjectHandle,
    scheme: Scheme,
    public: Key,
}

impl TokenSession<'_> {
    fn find(&self, template: &[Attribute]) -> Result<Vec<ObjectHandle>, SignError> {
        self.session
            .find_objects(template)
            .map_err(ck(format!("searching token {:?}", self.token)))
    }

    fn label_of(&self, h: ObjectHandle) -> Option<String> {
        match self
            .session
            .get_attributes(h, &[AttributeType::Label])
            .ok()?
            .first()
        {
            Some(Attribute::Label(l)) => Some(String::from_utf8_lossy(l).into_owned()),
            _ => None,
        }
    }

    /// Labels of the private keys on the token, sorted.
    fn private_key_labels(&self) -> Result<Vec<String>, SignError> {
        let mut labels: Vec<String> = self
            .find(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])?
            .into_iter()
            .filter_map(|h| self.label_of(h))
            .collect();
        labels.sort();
        labels.dedup();
        Ok(labels)
    }

    fn mechanisms(&self) -> Result<Vec<MechanismType>, SignError> {
        self.module
            .ctx
            .get_mechanism_list(self.slot)
            .map_err(ck(format!(
                "listing the mechanisms of token {:?}",
                self.token
            )))
    }

    /// The private key labelled `object` (exactly one).
    fn private_key(&self, object: &str) -> Result<ObjectHandle, SignError> {
        let found = self.find(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(object.as_bytes().to_vec()),
        ])?;
        match found.as_slice() {
            [h] => Ok(*h),
            [] => {
                let labels = self.private_key_labels()?;
                let present = if labels.is_empty() {
                    "none".to_string()
                } else {
                    labels.join(", ")
                };
                Err(SignError::Pkcs11(format!(
                    "no private key labelled {object:?} on token {:?}; private keys present: \
                     {present}. Fix the object= part of the key reference, or generate the key",
                    self.token
                )))
            }
            many => Err(SignError::Pkcs11(format!(
                "{} private keys are labelled {object:?} on token {:?}; the reference is \
                 ambiguous, relabel or delete all but one",
                many.len(),
                self.token
            ))),
        }
    }

    /// The private key labelled `object`, its scheme and its TUF public key.
    fn key_pair(&self, object: &str) -> Result<KeyPair, SignError> {
        let private = self.private_key(object)?;
        self.key_pair_for(private, object)
    }

    fn key_pair_for(&self, private: ObjectHandle, object: &str) -> Result<KeyPair, SignError> {
        let token = &self.token;
        let attrs = self
            .session
            .get_attributes(
                private,
                &[
                    AttributeType::KeyType,
                    AttributeType::Id,
                    AttributeType::Sign,
                ],
            )
            .map_err(ck(format!("reading key {object:?} on token {token:?}")))?;
        let mut key_type = None;
        let mut id = None;
        let mut can_sign = true;
        for a in attrs {
            match a {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::Id(i) if !i.is_empty() => id = Some(i),
                Attribute::Sign(s) => can_sign = s,
                _ => {}
            }
        }
        let key_type = key_type.ok_or_else(|| {
            SignError::Pkcs11(format!(
                "private key {object:?} on token {token:?} has no readable CKA_KEY_TYPE"
            ))
        })?;
        if key_type != KeyType::EC && key_type != KeyType::EC_EDWARDS {
            return Err(SignError::Pkcs11(format!(
                "private key {object:?} on token {token:?} is of type {key_type}; Rampart's \
                 PKCS#11 backend signs with ed25519 (CKK_EC_EDWARDS) and ecdsa-sha2-nistp256 \
                 (CKK_EC on P-256) keys only; keep ml-dsa-65 keys in the file backend"
            )));
        }
        if !can_sign {
            return Err(SignError::Pkcs11(format!(
                "private key {object:?} on token {token:?} has CKA_SIGN=false and cannot sign"
            )));
        }

        // The public half carries the point (private EC objects need not).
        let mut template = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(object.as_bytes().to_vec()),
        ];
        if let Some(id) = id {
            template.push(Attribute::Id(id));
        }
        let publics = self.find(&template)?;
        let public = match publics.as_slice() {
            [h] => *h,
            [] => {
                return Err(SignError::Pkcs11(format!(
                    "token {token:?} has a private key labelled {object:?} but no matching public \
                     key object (same label and CKA_ID); Rampart needs the public key to build \
                     the TUF key. Import it onto the token or regenerate the key pair"
                )));
            }
            many => {
                return Err(SignError::Pkcs11(format!(
                    "{} public keys on token {token:?} match private key {object:?}; relabel or \
                     delete the extra ones",
                    many.len()
                )));
            }
        };
        let attrs = self
            .session
            .get_attributes(
                public,
                &[
                    AttributeType::KeyType,
                    AttributeType::EcParams,
                    AttributeType::EcPoint,
                ],
            )
            .map_err(ck(format!(
                "reading public key {object:?} on token {token:?}"
            )))?;
        let mut pub_type = None;
        let mut params = None;
        let mut point = None;
        for a in attrs {
            match a {
                Attribute::KeyType(t) => pub_type = Some(t),
                Attribute::EcParams(p) => params = Some(p),
                Attribute::EcPoint(p) => point = Some(p),
                _ => {}
            }
        }
        if pub_type != Some(key_type) {
            return Err(SignError::Pkcs11(format!(
                "the public and private key objects labelled {object:?} on token {token:?} have \
                 different key types"
            )));
        }
        let (Some(params), Some(point)) = (params, point) else {
            return Err(SignError::Pkcs11(format!(
                "public key {object:?} on token {token:?} lacks CKA_EC_PARAMS or CKA_EC_POINT"
            )));
        };
        let scheme = scheme_for(key_type, &params).map_err(|why| {
            SignError::Pkcs11(format!("key {object:?} on token {token:?}: {why}"))
        })?;
        let raw = unwrap_ec_point(scheme, &point).map_err(|why| {
            SignError::Pkcs11(format!("public key {object:?} on token {token:?}: {why}"))
        })?;
        let public = Key::from_public_bytes(scheme, raw)?;
        Ok(KeyPair {
            private,
            scheme,
            public,
        })
    }
}

/// The scheme of an EC key from its CKA_KEY_TYPE and CKA_EC_PARAMS.
fn scheme_for(key_type: KeyType, params: &[u8]) -> Result<Scheme, String> {
    let is_ed25519 = params == ED25519_OID_PARAMS || params == ED25519_NAME_PARAMS;
    if key_type == KeyType::EC_EDWARDS && is_ed25519 {
        Ok(Scheme::Ed25519)
    } else if key_type == KeyType::EC && params == P256_PARAMS {
        Ok(Scheme::EcdsaP256Sha256)
    } else {
        Err(format!(
            "curve with CKA_EC_PARAMS {} (key type {key_type}) is not supported; Rampart supports \
             Ed25519 (CKK_EC_EDWARDS) and P-256 (CKK_EC, OID 1.2.840.10045.3.1.7) keys",
            hex::encode(params)
        ))
    }
}

/// CKA_EC_POINT is a DER OCTET STRING around the point (some tokens return the bare point).
fn unwrap_ec_point(scheme: Scheme, der: &[u8]) -> Result<&[u8], String> {
    let want = match scheme {
        Scheme::Ed25519 => 32,
        _ => 65,
    };
    if der.len() == want + 2 && der[0] == 0x04 && usize::from(der[1]) == want {
        Ok(&der[2..])
    } else if der.len() == want {
        Ok(der)
    } else {
        Err(format!(
            "CKA_EC_POINT is {} bytes, expected a {want}-byte point (optionally in a DER OCTET \
             STRING)",
            der.len()
        ))
    }
}

/// Error for schemes this backend does not create on tokens.
fn unsupported_scheme(cfg: &ModuleConfig, r: &TokenKeyRef, scheme: Scheme) -> SignError {
    let name = scheme.as_str();
    if scheme == Scheme::RsaPssSha256 {
        return SignError::Pkcs11(format!(
            "{name} keys are accepted for verification only and Rampart does not create them; \
             generate an ed25519 or ecdsa-sha2-nistp256 key on the token instead"
        ));
    }
    // ML-DSA-65: name what the token offers, as far as it can be asked without logging in.
    let offered = module(&cfg.module_path).ok().and_then(|m| {
        let _ops = m.ops.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = m.find_token(&r.token).ok()?;
        m.ctx.get_mechanism_list(slot).ok()
    });
    let token = &r.token;
    let detail = match offered {
        Some(list)
            if list.contains(&MechanismType::ML_DSA_KEY_PAIR_GEN)
                && list.contains(&MechanismType::ML_DSA) =>
        {
            format!(
                "token {token:?} lists CKM_ML_DSA_KEY_PAIR_GEN, but Rampart's PKCS#11 backend does \
                 not drive ML-DSA keys yet"
            )
        }
        Some(_) => format!(
            "token {token:?} does not support it: its mechanism list has no \
             CKM_ML_DSA_KEY_PAIR_GEN / CKM_ML_DSA (SoftHSM2 2.6 has no ML-DSA)"
        ),
        None => "the PKCS#11 backend does not support ML-DSA".to_string(),
    };
    SignError::Pkcs11(format!(
        "cannot generate {name} keys on a PKCS#11 token: {detail}; use the file backend \
         (a file:PATH key reference, passphrase-encrypted) for {name} keys"
    ))
}

// ---------------------------------------------------------------------------------------------
// The signer
// ---------------------------------------------------------------------------------------------

/// A signer whose private key lives, non-extractable, on a PKCS#11 token.
///
/// It holds the shared module context and the PIN; every [`Signer::sign`] opens a session,
/// logs in, signs on the token and closes the session. It is `Send + Sync`; concurrent signs
/// on one module are serialised.
pub struct Pkcs11Signer {
    module: Arc<Module>,
    reference: TokenKeyRef,
    pin: AuthPin,
    scheme: Scheme,
    public: Key,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("module", &self.module.path)
            .field("reference", &self.reference.to_string())
            .field("scheme", &self.scheme)
            .field("key_id", &self.public.key_id())
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Opens the key pair labelled `r.object` on the token labelled `r.token`.
    pub fn open(cfg: &ModuleConfig, r: &TokenKeyRef) -> Result<Pkcs11Signer, SignError> {
        let module = module(&cfg.module_path)?;
        let pin = AuthPin::from(cfg.pin.clone());
        let (scheme, public) = {
            let ts = module.session(&r.token, &pin, false)?;
            let kp = ts.key_pair(&r.object)?;
            (kp.scheme, kp.public)
        };
        Ok(Pkcs11Signer {
            module,
            reference: r.clone(),
            pin,
            scheme,
            public,
        })
    }

    /// Generates a key pair of `scheme` on the token labelled `r.token`, labelled `r.object`.
    /// The private key is a token object that is private, sensitive, non-extractable and can
    /// only sign. Refuses if any object on the token already carries that label.
    pub fn generate(
        cfg: &ModuleConfig,
        r: &TokenKeyRef,
        scheme: Scheme,
    ) -> Result<Pkcs11Signer, SignError> {
        let (keygen, sign_mech) = match scheme {
            Scheme::Ed25519 => (Mechanism::EccEdwardsKeyPairGen, MechanismType::EDDSA),
            Scheme::EcdsaP256Sha256 => (Mechanism::EccKeyPairGen, MechanismType::ECDSA),
            Scheme::MlDsa65 | Scheme::RsaPssSha256 => {
                return Err(unsupported_scheme(cfg, r, scheme));
            }
        };
        let module = module(&cfg.module_path)?;
        let pin = AuthPin::from(cfg.pin.clone());
        let public = {
            let ts = module.session(&r.token, &pin, true)?;
            let token = &r.token;
            let object = &r.object;

            let mechanisms = ts.mechanisms()?;
            for m in [keygen.mechanism_type(), sign_mech] {
                if !mechanisms.contains(&m) {
                    return Err(SignError::Pkcs11(format!(
                        "token {token:?} does not offer {m}, needed for {} keys; use a token \
                         that supports it or the file backend",
                        scheme.as_str()
                    )));
                }
            }

            let label = object.as_bytes().to_vec();
            if !ts.find(&[Attribute::Label(label.clone())])?.is_empty() {
                return Err(SignError::Pkcs11(format!(
                    "an object labelled {object:?} already exists on token {token:?}; refusing \
                     to create a second one. Choose another object= label, or delete the old \
                     key with your token's tool first (e.g. pkcs11-tool --delete-object)"
                )));
            }

            let mut id = vec![0u8; 16];
            SystemRandom::new()
                .fill(&mut id)
                .map_err(|_| SignError::Pkcs11("the OS random source failed".into()))?;
            let private_template = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Derive(false),
                Attribute::Label(label.clone()),
                Attribute::Id(id.clone()),
            ];
            let params_choices: &[&[u8]] = match scheme {
                Scheme::Ed25519 => &[ED25519_OID_PARAMS, ED25519_NAME_PARAMS],
                _ => &[P256_PARAMS],
            };
            let mut last_err = None;
            let mut generated = None;
            for params in params_choices {
                let public_template = [
                    Attribute::Token(true),
                    Attribute::Private(false),
                    Attribute::Verify(true),
                    Attribute::Label(label.clone()),
                    Attribute::Id(id.clone()),
                    Attribute::EcParams(params.to_vec()),
                ];
                match ts
                    .session
                    .generate_key_pair(&keygen, &public_template, &private_template)
                {
                    Ok(pair) => {
                        generated = Some(pair);
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            let Some((pub_handle, priv_handle)) = generated else {
                let e = last_err.expect("at least one parameter encoding was tried");
                return Err(SignError::Pkcs11(format!(
                    "generating a {} key pair on token {token:?} failed: {e}",
                    scheme.as_str()
                )));
            };
            match ts.key_pair_for(priv_handle, object) {
                Ok(kp) if kp.scheme == scheme => kp.public,
                outcome => {
                    // Do not leave a half-usable key behind.
                    let _ = ts.session.destroy_object(priv_handle);
                    let _ = ts.session.destroy_object(pub_handle);
                    return Err(match outcome {
                        Err(e) => e,
                        Ok(kp) => SignError::Pkcs11(format!(
                            "token {token:?} generated a {} key when asked for {}",
                            kp.scheme.as_str(),
                            scheme.as_str()
                        )),
                    });
                }
            }
        };
        Ok(Pkcs11Signer {
            module,
            reference: r.clone(),
            pin,
            scheme,
            public,
        })
    }

    /// The key reference this signer was opened with.
    pub fn reference(&self) -> &TokenKeyRef {
        &self.reference
    }
}

impl Signer for Pkcs11Signer {
    fn public_key(&self) -> &Key {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let r = &self.reference;
        let ts = self.module.session(&r.token, &self.pin, false)?;
        let kp = ts.key_pair(&r.object)?;
        if kp.public != self.public {
            return Err(SignError::Pkcs11(format!(
                "key {r} changed on the token since it was opened (its public key differs); \
                 re-open it and check who replaced it"
            )));
        }
        let failed = |e| SignError::Pkcs11(format!("signing with {r} failed: {e}"));
        let signature = match self.scheme {
            Scheme::Ed25519 => {
                let mech = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                ts.session
                    .sign(&mech, kp.private, message)
                    .map_err(failed)?
            }
            Scheme::EcdsaP256Sha256 => {
                let digest = ring::digest::digest(&ring::digest::SHA256, message);
                let fixed = ts
                    .session
                    .sign(&Mechanism::Ecdsa, kp.private, digest.as_ref())
                    .map_err(failed)?;
                p256_fixed_to_der(&fixed)?
            }
            Scheme::MlDsa65 | Scheme::RsaPssSha256 => {
                unreachable!("signers are only built for ed25519 and P-256 keys")
            }
        };
        drop(ts);
        // A token fault must not produce metadata that fails verification later.
        self.public.verify(message, &signature).map_err(|_| {
            SignError::Pkcs11(format!(
                "the signature made by {r} does not verify under its public key; the token is \
                 misbehaving"
            ))
        })?;
        Ok(signature)
    }
}

/// Lists the key pairs on the token labelled `token` that Rampart can sign with: each private
/// key's label with its TUF public key, sorted by label. Keys of other types, without a
/// label, or without a public key object are left out.
pub fn list_keys(cfg: &ModuleConfig, token: &str) -> Result<Vec<(String, Key)>, SignError> {
    let module = module(&cfg.module_path)?;
    let pin = AuthPin::from(cfg.pin.clone());
    let ts = module.session(token, &pin, false)?;
    let mut keys = Vec::new();
    for h in ts.find(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])? {
        let Some(label) = ts.label_of(h).filter(|l| !l.is_empty()) else {
            continue;
        };
        if let Ok(kp) = ts.key_pair_for(h, &label) {
            keys.push((label, kp.public));
        }
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_references() {
        let r = TokenKeyRef::parse("token=rampart-test;object=root-1").unwrap();
        assert_eq!(r.token, "rampart-test");
        assert_eq!(r.object, "root-1");
        assert_eq!(r.to_string(), "pkcs11:token=rampart-test;object=root-1");

        let r = TokenKeyRef::parse("pkcs11:object=my%20key%3Bx;type=private;token=T").unwrap();
        assert_eq!(r.object, "my key;x");
        assert_eq!(r.token, "T");
        assert_eq!(r.to_string(), "pkcs11:token=T;object=my%20key%3Bx");
        assert_eq!(TokenKeyRef::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn rejects_bad_references() {
        for (s, needle) in [
            ("token=a", "missing object="),
            ("object=a", "missing token="),
            ("token=a;object=b;id=%01", "unknown attribute id"),
            ("token=a;object=b;token=c", "given twice"),
            ("token=a;object=", "empty"),
            ("token=a;object=b?pin-value=1234", "RAMPART_PKCS11_PIN"),
            ("token=a;object=%zz", "percent escape"),
            ("token=a;object=b;type=cert", "type=private"),
            ("token", "no value"),
        ] {
            match TokenKeyRef::parse(s) {
                Err(SignError::BadReference(msg)) => {
                    assert!(msg.contains(needle), "{s}: {msg}")
                }
                other => panic!("{s}: expected BadReference, got {other:?}"),
            }
        }
    }

    #[test]
    fn module_config_errors_are_clear() {
        let err = ModuleConfig::from_lookup(|name| match name {
            MODULE_ENV => Some("/nonexistent/libpkcs11.so".into()),
            _ => Some("1234".into()),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/libpkcs11.so"), "{err}");
        assert!(err.contains(MODULE_ENV), "{err}");

        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_str().unwrap().to_string();
        let err = ModuleConfig::from_lookup(|name| (name == MODULE_ENV).then(|| exe.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(PIN_ENV), "{err}");

        let cfg = ModuleConfig::from_lookup(|name| {
            Some(if name == MODULE_ENV {
                exe.clone()
            } else {
                "1234".into()
            })
        })
        .unwrap();
        assert_eq!(cfg.pin, "1234");
        assert!(!format!("{cfg:?}").contains("1234"));
    }

    #[test]
    fn unwraps_ec_points() {
        let mut der = vec![0x04, 0x20];
        der.extend([7u8; 32]);
        assert_eq!(unwrap_ec_point(Scheme::Ed25519, &der).unwrap(), &[7u8; 32]);
        assert_eq!(
            unwrap_ec_point(Scheme::Ed25519, &[7u8; 32]).unwrap(),
            &[7u8; 32]
        );
        let mut point = vec![0x04];
        point.extend([9u8; 64]);
        let mut der = vec![0x04, 0x41];
        der.extend(&point);
        assert_eq!(
            unwrap_ec_point(Scheme::EcdsaP256Sha256, &der).unwrap(),
            &point[..]
        );
        assert_eq!(
            unwrap_ec_point(Scheme::EcdsaP256Sha256, &point).unwrap(),
            &point[..]
        );
        assert!(unwrap_ec_point(Scheme::EcdsaP256Sha256, &[4, 1, 2]).is_err());
    }

    #[test]
    fn signer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Pkcs11Signer>();
    }
}
