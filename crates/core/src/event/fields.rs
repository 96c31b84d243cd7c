//! The one table of event members: the CloudEvents attributes the parser
//! reads, every `data` field any event type carries (name, JSON type, meaning)
//! and the fields of each event type. The parser's slots and name lookups,
//! [`EventType::data_fields`] and the JSON Schemas are all generated from it,
//! so that nothing about a field is written twice.

use super::{AccountEvent, DataFieldSpec, DisputeEvent, EventType, FieldType, ProjectEvent};

/// A member of a JSON object that the parser looks for by name.
pub(super) trait Member: Copy + Sized + 'static {
    /// The member of that name, if the parser reads it.
    fn from_name(name: &str) -> Option<Self>;
}

/// Declares an enum of member names: the variants in order, their names, and
/// `from_name` as a `match`, which compiles to length and byte comparisons,
/// much cheaper than comparing against each name in turn.
macro_rules! member_names {
    ($(#[$meta:meta])* $type:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub(super) enum $type {
            $($variant),*
        }

        impl $type {
            /// Every member, in declaration order (`member as usize` is its position).
            pub(super) const ALL: [$type; [$($name),*].len()] = [$($type::$variant),*];
            /// How many members there are.
            pub(super) const COUNT: usize = $type::ALL.len();

            /// The member's name in JSON.
            pub(super) const fn name(self) -> &'static str {
                match self {
                    $($type::$variant => $name),*
                }
            }
        }

        impl Member for $type {
            fn from_name(name: &str) -> Option<$type> {
                match name {
                    $($name => Some($type::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

member_names! {
    /// The CloudEvents attributes the parser reads; every other member is an
    /// extension, kept in the line but ignored. `Data` comes last: the others
    /// are kept in the parser's attribute slots, `data` in its field slots.
    Attribute {
        SpecVersion = "specversion",
        Id = "id",
        Source = "source",
        Type = "type",
        Subject = "subject",
        Time = "time",
        DataContentType = "datacontenttype",
        Data = "data",
    }
}

/// Declares the `data` fields ([`DataField`], with each field's JSON type and
/// description) and the fields of each event type ([`EventType::data_fields`]).
macro_rules! data_field_table {
    (
        fields { $($field:ident = $name:literal: $field_type:ident, $description:literal;)* }
        types { $($machine:ident($event:path) => [$($member:ident $requirement:ident),*];)* }
    ) => {
        member_names! {
            /// Every `data` field any event type uses.
            DataField { $($field = $name),* }
        }

        impl DataField {
            /// The field's JSON type, the same in every event type that has it.
            pub(super) const fn field_type(self) -> FieldType {
                match self {
                    $(DataField::$field => FieldType::$field_type),*
                }
            }

            /// What the field means, for the schemas' readers.
            pub(super) const fn description(self) -> &'static str {
                match self {
                    $(DataField::$field => $description),*
                }
            }
        }

        impl EventType {
            /// The `data` fields this type carries: name, JSON type, and whether required.
            pub fn data_fields(self) -> &'static [DataFieldSpec] {
                match self {
                    $(EventType::$machine($event) => {
                        const FIELDS: &[DataFieldSpec] =
                            &[$(spec(DataField::$member, requirement!($requirement))),*];
                        FIELDS
                    })*
                    _ => &[],
                }
            }
        }
    };
}

macro_rules! requirement {
    (required) => {
        true
    };
    (optional) => {
        false
    };
}

const fn spec(field: DataField, required: bool) -> DataFieldSpec {
    DataFieldSpec {
        name: field.name(),
        field_type: field.field_type(),
        required,
        description: field.description(),
    }
}

data_field_table! {
    fields {
        Plan = "plan": String,
            "The account's plan, e.g. free, team or enterprise; it sets the account's project limit.";
        Region = "region": String, "The region, e.g. eu-west-1.";
        Reason = "reason": String, "Why, in words for people.";
        AccountId = "account_id": String, "The id of the account it belongs to.";
        Attempt = "attempt": Integer, "Which provisioning attempt this is, counting from 1.";
        Error = "error": String, "What went wrong, in words for people.";
        Retryable = "retryable": Bool, "Whether the failure may succeed when retried.";
        Resource = "resource": String,
            "The quota's resource, e.g. cpu; a quota_restored with the same resource ends the breach.";
        Limit = "limit": Integer, "The quota's limit.";
        Used = "used": Integer, "How much is in use.";
        AmountCents = "amount_cents": Integer, "The disputed amount in the currency's minor unit.";
        Currency = "currency": String, "The ISO 4217 currency code, e.g. EUR.";
        Outcome = "outcome": String, "How the dispute ended, e.g. won or lost.";
    }
    types {
        Account(AccountEvent::Created) => [Plan required, Region optional];
        Account(AccountEvent::OnboardingFailed) => [Reason required];
        Account(AccountEvent::Suspended) => [Reason required];
        Account(AccountEvent::PlanChanged) => [Plan required];
        Project(ProjectEvent::Requested) => [AccountId required, Region required];
        Project(ProjectEvent::ProvisioningStarted) => [Attempt optional];
        Project(ProjectEvent::ProvisioningFailed) => [Error required, Retryable optional];
        Project(ProjectEvent::QuotaExceeded) => [Resource required, Limit required, Used required];
        Project(ProjectEvent::QuotaRestored) => [Resource required];
        Dispute(DisputeEvent::Opened) => [AccountId required, AmountCents required, Currency required];
        Dispute(DisputeEvent::Closed) => [Outcome required];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_positions_agree() {
        for (position, attribute) in Attribute::ALL.into_iter().enumerate() {
            assert_eq!(attribute as usize, position);
            assert_eq!(Attribute::from_name(attribute.name()), Some(attribute));
        }
        for (position, field) in DataField::ALL.into_iter().enumerate() {
            assert_eq!(field as usize, position);
            assert_eq!(DataField::from_name(field.name()), Some(field));
        }
        assert_eq!(Attribute::ALL.last(), Some(&Attribute::Data), "data is not an attribute slot");
        assert_eq!(DataField::from_name("extra"), None);
    }

    #[test]
    fn every_field_is_used_by_some_type() {
        for field in DataField::ALL {
            let used = EventType::ALL
                .into_iter()
                .any(|event_type| event_type.data_fields().iter().any(|spec| spec.name == field.name()));
            assert!(used, "{} belongs to no event type", field.name());
        }
    }
}
