//! Why a storage operation failed. Two different things can go wrong, and callers answer them
//! differently: the request does not fit what is stored ([`DomainError`]: an unknown device,
//! group or assignment, an invalid value, a conflict, a quota; the caller's to correct), or the
//! storage itself failed ([`StorageError`]: the URL, the database, a migration; nobody's
//! request was wrong). [`DbError`] carries either, flat, so existing matches on its variants keep
//! working; [`DbError::split`] separates them.

/// Why a storage operation failed (see the module documentation).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL {0:?} is not supported: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error("unknown assignment {0:?}")]
    UnknownAssignment(String),
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with stored state (e.g. a device in two active campaigns).
    #[error("{0}")]
    Conflict(String),
    /// A per-object limit is reached (e.g. feedback entries of one DDI action).
    #[error("{0}")]
    Quota(String),
}

/// The request does not fit what is stored: the caller's to correct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error("unknown assignment {0:?}")]
    UnknownAssignment(String),
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with stored state (e.g. a device in two active campaigns).
    #[error("{0}")]
    Conflict(String),
    /// A per-object limit is reached (e.g. feedback entries of one DDI action).
    #[error("{0}")]
    Quota(String),
}

/// The storage itself failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database URL {0:?} is not supported: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StorageError {
    /// The database cannot be reached right now (pool exhausted or closed, I/O, TLS): worth a
    /// retry later, unlike a query the database refused.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StorageError::Sql(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
            )
        )
    }
}

impl DbError {
    /// What the caller did wrong (`Ok`), or what failed in storage (`Err`).
    pub fn split(self) -> Result<DomainError, StorageError> {
        match self {
            DbError::UnknownDevice(id) => Ok(DomainError::UnknownDevice(id)),
            DbError::UnknownGroup(name) => Ok(DomainError::UnknownGroup(name)),
            DbError::UnknownAssignment(id) => Ok(DomainError::UnknownAssignment(id)),
            DbError::Invalid(m) => Ok(DomainError::Invalid(m)),
            DbError::Conflict(m) => Ok(DomainError::Conflict(m)),
            DbError::Quota(m) => Ok(DomainError::Quota(m)),
            DbError::UnsupportedUrl(url) => Err(StorageError::UnsupportedUrl(url)),
            DbError::Sql(e) => Err(StorageError::Sql(e)),
            DbError::Migrate(e) => Err(StorageError::Migrate(e)),
        }
    }

    /// Whether the caller's request was at fault (not the storage).
    pub fn is_domain(&self) -> bool {
        !matches!(
            self,
            DbError::UnsupportedUrl(_) | DbError::Sql(_) | DbError::Migrate(_)
        )
    }
}

impl From<DomainError> for DbError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::UnknownDevice(id) => DbError::UnknownDevice(id),
            DomainError::UnknownGroup(name) => DbError::UnknownGroup(name),
            DomainError::UnknownAssignment(id) => DbError::UnknownAssignment(id),
            DomainError::Invalid(m) => DbError::Invalid(m),
            DomainError::Conflict(m) => DbError::Conflict(m),
            DomainError::Quota(m) => DbError::Quota(m),
        }
    }
}

impl From<StorageError> for DbError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::UnsupportedUrl(url) => DbError::UnsupportedUrl(url),
            StorageError::Sql(e) => DbError::Sql(e),
            StorageError::Migrate(e) => DbError::Migrate(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_and_storage_errors_split_and_come_back_whole() {
        let domain = [
            DbError::UnknownDevice("d".into()),
            DbError::UnknownGroup("g".into()),
            DbError::UnknownAssignment("a".into()),
            DbError::Invalid("i".into()),
            DbError::Conflict("c".into()),
            DbError::Quota("q".into()),
        ];
        for e in domain {
            assert!(e.is_domain(), "{e}");
            let text = e.to_string();
            let d = e.split().expect("a domain error");
            assert_eq!(d.to_string(), text);
            assert_eq!(DbError::from(d).to_string(), text);
        }
        for e in [
            DbError::UnsupportedUrl("mysql://x".into()),
            DbError::Sql(sqlx::Error::PoolTimedOut),
            DbError::Sql(sqlx::Error::RowNotFound),
        ] {
            assert!(!e.is_domain(), "{e}");
            let text = e.to_string();
            let s = e.split().expect_err("a storage error");
            assert_eq!(s.to_string(), text);
            assert_eq!(DbError::from(s).to_string(), text);
        }
    }

    #[test]
    fn only_an_unreachable_database_is_unavailable() {
        assert!(StorageError::Sql(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(StorageError::Sql(sqlx::Error::PoolClosed).is_unavailable());
        assert!(!StorageError::Sql(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StorageError::UnsupportedUrl("x".into()).is_unavailable());
    }
}
