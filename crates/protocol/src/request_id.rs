//! Request ids: echoed when the client sends one, generated when not.

use crate::error::RpcError;
use std::fmt;

/// Longest request id accepted, in bytes.
pub const MAX_LEN: usize = 128;

/// A request id that is safe to copy into headers and logs: 1 to 128 visible
/// ASCII characters, so no CR, LF or other control byte can ever travel with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random (v4) UUID.
    pub fn generate() -> Self {
        RequestId(uuid::Uuid::new_v4().to_string())
    }

    /// Checks a client-supplied id.
    pub fn parse(s: &str) -> Result<Self, RpcError> {
        if is_valid(s.as_bytes()) {
            return Ok(RequestId(s.to_owned()));
        }
        Err(RpcError::invalid_request(format!(
            "requestId must be 1 to {MAX_LEN} visible ASCII characters"
        )))
    }

    /// Takes a header value when it is a valid id; anything else is ignored
    /// and a fresh id is used, so a bad header never fails a request.
    pub fn from_header(value: Option<&[u8]>) -> Self {
        match value {
            Some(v) if is_valid(v) => RequestId(String::from_utf8_lossy(v).into_owned()),
            _ => Self::generate(),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_valid(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.len() <= MAX_LEN && bytes.iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_uuids() {
        let id = RequestId::generate();
        assert!(uuid::Uuid::parse_str(id.as_str()).is_ok());
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(RequestId::parse("abc\r\nx-evil: 1").is_err());
        assert!(RequestId::parse("").is_err());
        assert!(RequestId::parse(&"a".repeat(MAX_LEN + 1)).is_err());
        assert!(RequestId::parse("5545abec-aab1-4efa-80ef-b3491cb4b6c5").is_ok());
    }

    #[test]
    fn bad_header_gets_a_fresh_id() {
        let id = RequestId::from_header(Some(b"bad\nid"));
        assert_ne!(id.as_str(), "bad\nid");
        assert_eq!(RequestId::from_header(Some(b"good")).as_str(), "good");
    }
}
