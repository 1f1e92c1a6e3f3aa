//! Timestamps as every backend stores them: microseconds since the Unix epoch, UTC.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::{Error, Result};

/// Now, truncated to the microsecond so that a stored and re-read time compares equal.
pub(crate) fn now() -> DateTime<Utc> {
    from_micros(Utc::now().timestamp_micros())
}

pub(crate) fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

pub(crate) fn ttl_to_chrono(ttl: Duration) -> Result<TimeDelta> {
    if ttl.is_zero() || ttl > Duration::from_secs(365 * 24 * 3600) {
        return Err(Error::invalid(format!(
            "a lease lasts more than 0 s and at most a year, not {ttl:?}"
        )));
    }
    TimeDelta::from_std(ttl).map_err(|e| Error::invalid(e.to_string()))
}
