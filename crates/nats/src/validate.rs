//! Validation of one message from the events stream: the payload must parse
//! (SPEC.md section 1), agree with the subject it arrived on (section 6),
//! and not be timed too far in the future of the wall clock.

use lifewatch_core::{Duration, Event, RejectReason, Rejection, Timestamp, parse_event};

/// The event in `payload`, or why it is rejected. `subject` is the NATS
/// subject the message arrived on; it must be exactly
/// `lifecycle.<entity type>.<entity id>.<event name>` of the parsed event.
/// `now` is the wall clock; an event timed more than `max_future` after it is
/// rejected as `time_in_future`.
pub fn validate_message<'a>(
    subject: &str,
    payload: &'a [u8],
    now: Timestamp,
    max_future: Duration,
) -> Result<Event<'a>, Rejection> {
    let event = parse_event(payload)?;
    if !subject_matches(subject, &event) {
        return Err(Rejection::new(
            RejectReason::SubjectMismatch,
            format!("arrived on {subject:?} but the event belongs on {:?}", event.nats_subject()),
        ));
    }
    check_future(&event, now, max_future)?;
    Ok(event)
}

/// Rejects an event timed more than `max_future` after `now` as `time_in_future`.
pub fn check_future(event: &Event<'_>, now: Timestamp, max_future: Duration) -> Result<(), Rejection> {
    if event.time > now.saturating_add(max_future) {
        return Err(Rejection::new(
            RejectReason::TimeInFuture,
            format!(
                "event time is {}s ahead of the wall clock, more than the allowed {}s",
                event.time.since(now).as_nanos() / 1_000_000_000,
                max_future.as_nanos() / 1_000_000_000
            ),
        ));
    }
    Ok(())
}

/// Whether `subject` is `lifecycle.<entity type>.<entity id>.<event name>` of `event`,
/// compared without allocating.
pub fn subject_matches(subject: &str, event: &Event<'_>) -> bool {
    let mut tokens = subject.splitn(4, '.');
    tokens.next() == Some("lifecycle")
        && tokens.next() == Some(event.event_type.entity_type().as_str())
        && tokens.next() == Some(&*event.subject)
        && tokens.next() == Some(event.event_type.event_name())
}

/// The wall clock as a [`Timestamp`], or `None` if it is outside 1970..2262.
pub fn wall_clock() -> Option<Timestamp> {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
    let nanos = i64::try_from(since_epoch.as_nanos()).ok()?;
    Some(Timestamp::from_unix_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &[u8] = br#"{"specversion":"1.0","id":"e1","source":"s","type":"project.provisioned","subject":"prj_1","time":"2026-11-27T12:00:00Z"}"#;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn accepts_the_matching_subject() {
        let now = at("2026-11-27T12:00:00Z");
        let event =
            validate_message("lifecycle.project.prj_1.provisioned", LINE, now, Duration::from_seconds(300));
        assert!(event.is_ok());
    }

    #[test]
    fn rejects_mismatches() {
        let now = at("2026-11-27T12:00:00Z");
        let five = Duration::from_seconds(300);
        for subject in [
            "lifecycle.project.prj_2.provisioned",
            "lifecycle.account.prj_1.provisioned",
            "lifecycle.project.prj_1.deleted",
            "lifecycle.project.prj_1.provisioned.extra",
            "events.project.prj_1.provisioned",
            "lifecycle.project.prj_1",
        ] {
            let rejection = validate_message(subject, LINE, now, five).unwrap_err();
            assert_eq!(rejection.reason, RejectReason::SubjectMismatch, "{subject}");
        }
    }

    #[test]
    fn rejects_events_from_the_future() {
        let subject = "lifecycle.project.prj_1.provisioned";
        let five = Duration::from_seconds(300);
        assert!(validate_message(subject, LINE, at("2026-11-27T11:55:00Z"), five).is_ok());
        let rejection = validate_message(subject, LINE, at("2026-11-27T11:54:59Z"), five).unwrap_err();
        assert_eq!(rejection.reason, RejectReason::TimeInFuture);
    }

    #[test]
    fn payload_rules_come_first() {
        let rejection =
            validate_message("lifecycle.x", b"{not json", at("2026-11-27T12:00:00Z"), Duration::ZERO)
                .unwrap_err();
        assert_eq!(rejection.reason, RejectReason::MalformedJson);
    }
}
