//! What a request to the center can end in, and an error with its causes in one line.

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The center could not be reached, or the connection broke.
    #[error("cannot reach the center: {0}")]
    Network(String),
    /// The center answered with an error.
    #[error("the center refused ({status}, {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The center answered something that is not the expected JSON.
    #[error("unexpected answer from the center: {0}")]
    Decode(String),
}

impl ClientError {
    /// Worth trying again later (the same request may succeed).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Network(_) | ClientError::Decode(_) => true,
            ClientError::Refused { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
        }
    }

    /// The credential is unknown or revoked.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ClientError::Refused { status: 401, .. })
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// An error with its causes, for logs ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
