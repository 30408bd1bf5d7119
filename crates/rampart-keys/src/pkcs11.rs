//! PKCS#11 signing backend (being written).
use crate::SignError;
pub struct TokenKeyRef;
impl TokenKeyRef {
    pub fn parse(_s: &str) -> Result<Self, SignError> {
        Err(SignError::Pkcs11("not built yet".into()))
    }
}
pub struct ModuleConfig;
impl ModuleConfig {
    pub fn from_env() -> Result<Self, SignError> {
        Err(SignError::Pkcs11("not built yet".into()))
    }
}
pub struct Pkcs11Signer;
impl Pkcs11Signer {
    pub fn open(_m: &ModuleConfig, _r: &TokenKeyRef) -> Result<crate::file::FileSigner, SignError> {
        Err(SignError::Pkcs11("not built yet".into()))
    }
}
