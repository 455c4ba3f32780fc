//! The `wire_enum!` macro: enums for wire values where unknown is a value (`Unknown(raw)`), never an error.

/// Declares an enum over a wire integer with an `Unknown(raw)` variant and lossless
/// `From` conversions both ways. Decoding never fails on an unknown value: it becomes
/// `Unknown(v)`, and the layer that understands the value decides which error to answer.
macro_rules! wire_enum {
    (
        $(#[$m:meta])*
        pub enum $name:ident : $ty:ty {
            $( $(#[$vm:meta])* $var:ident = $val:expr ),* $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vm])* $var, )*
            /// A value this implementation does not know, kept as it came.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                match v {
                    $( x if x == $val => $name::$var, )*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(v: $name) -> $ty {
                match v {
                    $( $name::$var => $val, )*
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $name {
            /// Every known variant, in declaration order.
            #[allow(dead_code)]
            pub const KNOWN: &'static [$name] = &[ $( $name::$var, )* ];

            /// The raw wire value.
            #[allow(dead_code)]
            pub fn raw(self) -> $ty {
                <$ty>::from(self)
            }
        }
    };
}

pub(crate) use wire_enum;
