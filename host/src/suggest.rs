//! "Did you mean …?": the nearest known name to a misspelt one.
//!
//! Names here are short identifiers (`v2_transfer_basic`, `transfer.gm_max`,
//! `window_points_step`), where the usual slips are a dropped, doubled or swapped letter
//! or a wrong case; the optimal-string-alignment distance of `strsim` counts a swap as
//! one edit, and a case-insensitive comparison makes `GM_max` match `gm_max`.

/// The candidate nearest to `word`, if it is close enough to be what was meant: at most a
/// third of the word's length in edits (so a name of one or two letters only matches in
/// another case). An exact match is not a suggestion.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let limit = word.chars().count() / 3;
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::osa_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `; did you mean 'NAME'?`, or nothing when no candidate is near, for the end of an
/// error message.
pub fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(word, candidates).map_or(String::new(), |c| format!("; did you mean '{c}'?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slips_find_the_intended_name_and_strangers_find_none() {
        let configs = ["v2_transfer_basic", "v2_quick_analysis", "transient_tau"];
        assert_eq!(
            nearest("v2_transfer_basc", configs),
            Some("v2_transfer_basic")
        );
        assert_eq!(
            nearest("v2_tranfser_basic", configs),
            Some("v2_transfer_basic")
        );
        assert_eq!(nearest("Transient_Tau", configs), Some("transient_tau"));
        assert_eq!(nearest("features", configs), None);
        assert_eq!(nearest("transient_tau", configs), None);
        assert_eq!(
            hint("parmas", ["params", "input"]),
            "; did you mean 'params'?"
        );
        assert_eq!(hint("zzz", ["params", "input"]), "");
        assert_eq!(nearest("y", ["x"]), None);
        assert_eq!(nearest("n", ["N", "P"]), Some("N"));
    }
}
