//! CONFIG.md, the reference of every key, checked against the types that
//! read the files: the keys in the first column of each table must be
//! exactly the keys the program accepts (read from the types' own
//! `Deserialize` impls by `yaml::schema`), so neither can drift.

use std::collections::BTreeSet;

use crate::yaml::schema::{self, Entry};

const REFERENCE: &str = include_str!("../../CONFIG.md");

/// The keys documented under the `## {heading}` section (first table cell).
fn documented(heading: &str) -> BTreeSet<String> {
    let section = REFERENCE
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("CONFIG.md has no `## {heading}` section"));
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

fn accepted(entries: Vec<Entry>) -> BTreeSet<String> {
    entries.iter().map(Entry::path).filter(|p| !p.is_empty()).collect()
}

fn compare(heading: &str, accepted: &BTreeSet<String>) {
    let documented = documented(heading);
    let missing: Vec<&String> = accepted.difference(&documented).collect();
    let unknown: Vec<&String> = documented.difference(accepted).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "CONFIG.md `## {heading}` is out of date.\n  accepted but not documented: {missing:?}\n  \
         documented but not accepted: {unknown:?}"
    );
}

#[test]
fn every_key_is_documented() {
    compare("channelgate.yaml", &accepted(schema::entries::<super::raw::File>()));
    compare("Policy files", &accepted(crate::policy::file_schema()));
    compare("Policy tests", &accepted(schema::entries::<crate::policy::testing::TestFile>()));
}

#[test]
fn the_schema_walk_finds_nested_list_and_optional_keys() {
    // The reference test is only as good as the walk: spot-check keys that
    // sit behind an Option, a Spanned, a one-or-many and a list.
    let keys = accepted(schema::entries::<super::raw::File>());
    for key in [
        "session.jwt.fetch_timeout",
        "session.token_from[]",
        "publish.clients[].secret",
        "rate_limit.trusted_proxies[]",
        "tls.key",
    ] {
        assert!(keys.contains(key), "{key} missing from {keys:?}");
    }
    assert!(documented("channelgate.yaml").contains("session.jwt.fetch_timeout"));
}
