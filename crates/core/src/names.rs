//! The enums' name tables come from `strum` derives (`IntoStaticStr`,
//! `EnumString`, `VariantArray`, `EnumCount`, `Display`), with serde's
//! `snake_case` names. This module turns a derived variant list into the
//! fixed-size `ALL` arrays that the public API has always offered, so that
//! callers may still `map` them or use their length in a constant.

use strum::VariantArray;

/// Every variant of `T`, in declaration order, as an array. `N` must be the
/// number of variants: a mismatch fails the build, since every caller
/// evaluates this in a constant.
pub(crate) const fn all<T: VariantArray + Copy, const N: usize>() -> [T; N] {
    assert!(T::VARIANTS.len() == N, "the array length must be the number of variants");
    let mut all = [T::VARIANTS[0]; N];
    let mut index = 0;
    while index < N {
        all[index] = T::VARIANTS[index];
        index += 1;
    }
    all
}

/// The name methods of an enum whose names `strum` derives: `ALL`, `as_str`
/// and `parse`, thin wrappers kept so that every caller reads names the same
/// way whatever derives them.
macro_rules! name_methods {
    ($($type:ident),* $(,)?) => {$(
        impl $type {
            /// Every variant, in declaration order.
            pub const ALL: [$type; <$type as strum::EnumCount>::COUNT] = crate::names::all();

            /// The snake_case name used in events, records, output and the store.
            pub fn as_str(self) -> &'static str {
                self.into()
            }

            /// The variant of that name.
            pub fn parse(name: &str) -> Option<$type> {
                name.parse().ok()
            }
        }
    )*};
}
pub(crate) use name_methods;

/// Declares a fieldless enum whose names come from strum, in snake_case:
/// the one place the name derives (and the plain value derives every such
/// enum has) are written. Extra derives and attributes (serde, `Display`,
/// docs) are given inside, after which the derives below are in scope.
macro_rules! named_enum {
    ($(#[$attribute:meta])* $visibility:vis enum $name:ident { $($variants:tt)* }) => {
        #[derive(
            Clone,
            Copy,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            Hash,
            Debug,
            strum::IntoStaticStr,
            strum::EnumString,
            strum::VariantArray,
            strum::EnumCount,
        )]
        #[strum(serialize_all = "snake_case")]
        $(#[$attribute])*
        $visibility enum $name { $($variants)* }
    };
}
pub(crate) use named_enum;
