//! Run statuses and the pure decisions about them: what an attempt's outcome makes of a run, and
//! when a retry is due. No database here, so every rule is unit-tested directly.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `queued → running → (waiting) → succeeded | failed | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// The transitions the engine makes. Anything else is a bug (or a lost race, which the
    /// fenced SQL refuses).
    pub fn can_become(self, next: RunStatus) -> bool {
        use RunStatus as S;
        matches!(
            (self, next),
            (S::Queued, S::Running | S::Cancelled)
                | (
                    S::Running,
                    S::Queued | S::Waiting | S::Succeeded | S::Failed | S::Cancelled
                )
                | (S::Waiting, S::Queued | S::Cancelled)
                | (S::Failed, S::Queued)
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown run status `{s}`"))
    }
}

/// How a kind retries transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half the exponential delay, plus a random part
    /// of the other half (`jitter` in 0..=1), so retries spread out but never come too early.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_backoff);
        let half = exp / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// How one attempt of a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(Value),
    /// Worth another attempt (network, 5xx, 429, lock timeout), optionally not before a delay
    /// the peer asked for (Retry-After).
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (validation, auth, not found, a bug).
    Permanent {
        message: String,
    },
    /// The run asked to stop; compensation (if any) has run.
    Cancelled,
    /// The run parked itself until something happens.
    Parked(Wait),
}

/// What a parked run waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    Signal(String),
    Until(DateTime<Utc>),
    Children,
}

/// What the engine does with a run after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Succeed(Value),
    RetryAt { at: DateTime<Utc>, error: String },
    Fail { error: String },
    Cancel,
    Park(Wait),
}

/// Decides the next state of a run from its attempt's outcome (pure).
pub fn decide(
    outcome: Outcome,
    attempt: u32,
    max_attempts: u32,
    policy: &RetryPolicy,
    now: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    match outcome {
        Outcome::Succeeded(v) => Decision::Succeed(v),
        Outcome::Cancelled => Decision::Cancel,
        Outcome::Parked(w) => Decision::Park(w),
        Outcome::Permanent { message } => Decision::Fail { error: message },
        Outcome::Transient {
            message,
            retry_after,
        } => {
            if attempt >= max_attempts {
                return Decision::Fail {
                    error: format!("{message} (gave up after {attempt} attempts)"),
                };
            }
            let delay = retry_after.unwrap_or_else(|| policy.backoff(attempt, jitter));
            let at =
                now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(1));
            Decision::RetryAt { at, error: message }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_only_leave_by_a_user_retry_of_a_failure() {
        for from in RunStatus::ALL {
            for to in RunStatus::ALL {
                if from.is_terminal() && from.can_become(to) {
                    assert_eq!((from, to), (RunStatus::Failed, RunStatus::Queued));
                }
            }
        }
        assert!(!RunStatus::Succeeded.can_become(RunStatus::Running));
        assert!(RunStatus::Running.can_become(RunStatus::Waiting));
        assert!(!RunStatus::Queued.can_become(RunStatus::Succeeded));
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(s));
        }
        assert!("done".parse::<RunStatus>().is_err());
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_the_upper_half() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(30),
        };
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(2));
        assert_eq!(p.backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(p.backoff(3, 1.0), Duration::from_secs(8));
        assert_eq!(p.backoff(10, 1.0), Duration::from_secs(30));
        assert_eq!(p.backoff(60, 0.0), Duration::from_secs(15));
    }

    #[test]
    fn transient_failures_retry_until_the_budget_then_fail() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        let t = || Outcome::Transient {
            message: "503".into(),
            retry_after: None,
        };
        assert!(
            matches!(decide(t(), 1, 3, &p, now, 0.5), Decision::RetryAt { at, .. } if at > now)
        );
        assert!(matches!(
            decide(t(), 3, 3, &p, now, 0.5),
            Decision::Fail { .. }
        ));
    }

    #[test]
    fn retry_after_from_the_peer_wins_over_backoff() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        let d = decide(
            Outcome::Transient {
                message: "429".into(),
                retry_after: Some(Duration::from_secs(42)),
            },
            1,
            5,
            &p,
            now,
            0.0,
        );
        assert_eq!(
            d,
            Decision::RetryAt {
                at: now + chrono::Duration::seconds(42),
                error: "429".into()
            }
        );
    }

    #[test]
    fn permanent_failures_fail_at_once() {
        let d = decide(
            Outcome::Permanent {
                message: "bad".into(),
            },
            1,
            5,
            &RetryPolicy::default(),
            Utc::now(),
            0.0,
        );
        assert_eq!(
            d,
            Decision::Fail {
                error: "bad".into()
            }
        );
    }
}
