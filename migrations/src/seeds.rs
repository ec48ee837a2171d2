//! The seed species every database knows from its first migration, under fixed ids.

use uuid::Uuid;

/// The namespace of seed ids: a seed's id is the UUID v5 of its name in this namespace,
/// so that every database (and every test) agrees on it.
pub const SEED_NAMESPACE: Uuid = Uuid::from_u128(0x6e61_6368_6574_4000_8000_7365_6564_7300);

/// The species of the reference database's `/seeds` list (contract 1.6), in its order.
pub const SEED_SPECIES: [&str; 15] = [
    "Brassica napus",
    "Brassica juncea",
    "Cirsium arvense",
    "Cirsium vulgare",
    "Carduus nutans",
    "Bromus secalinus",
    "Bromus hordeaceus",
    "Bromus japonicus",
    "Lolium temulentum",
    "Solanum carolinense",
    "Solanum nigrum",
    "Solanum rostratum",
    "Ambrosia artemisiifolia",
    "Ambrosia trifida",
    "Ambrosia psilostachya",
];

/// The fixed id of the seed species named `name`.
pub fn seed_id(name: &str) -> Uuid {
    Uuid::new_v5(&SEED_NAMESPACE, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_stable() {
        let ids: std::collections::BTreeSet<Uuid> =
            SEED_SPECIES.iter().map(|n| seed_id(n)).collect();
        assert_eq!(ids.len(), SEED_SPECIES.len());
        assert_eq!(seed_id("Brassica napus"), seed_id("Brassica napus"));
        assert_eq!(seed_id("Brassica napus").get_version_num(), 5);
    }
}
