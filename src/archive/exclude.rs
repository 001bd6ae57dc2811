//! What a backup leaves out, with restic's rules: glob patterns (anchored with `/`, otherwise matching
//! at any depth, `dir/` for directories only, case-insensitive on request), tag files that mark a
//! directory (`CACHEDIR.TAG`), and a size limit. The same patterns select paths in `find` and `restore`.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// The tag file of the Cache Directory Tagging Specification, and the header it must start with.
pub const CACHEDIR_TAG: &str = "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55";

/// Compiled exclusion patterns. ExcludePattern numbers (as [`ExcludeMatcher::matching`] returns them) follow
/// the order the patterns were given in, so a caller can count what each one matched.
#[derive(Clone, Debug, Default)]
pub struct ExcludeMatcher {
    // Patterns as given, for messages.
    patterns: Vec<String>,
    // Patterns that match any kind of entry, and the pattern number of each glob.
    any_kind: Option<GlobSet>,
    any_kind_numbers: Vec<usize>,
    // Patterns written with a trailing `/`: directories only.
    dirs_only: Option<GlobSet>,
    dirs_only_numbers: Vec<usize>,
}

/// One pattern as the user wrote it, and whether it ignores case.
#[derive(Clone, Debug)]
pub struct ExcludePattern {
    pub text: String,
    pub ignore_case: bool,
}

impl ExcludePattern {
    /// A case-sensitive pattern (`--exclude`).
    pub fn exact(text: impl Into<String>) -> ExcludePattern {
        ExcludePattern {
            text: text.into(),
            ignore_case: false,
        }
    }

    /// A pattern that ignores case (`--iexclude`).
    pub fn ignoring_case(text: impl Into<String>) -> ExcludePattern {
        ExcludePattern {
            text: text.into(),
            ignore_case: true,
        }
    }
}

impl ExcludeMatcher {
    /// Case-sensitive patterns over absolute paths; `./` and `../` patterns are taken from `/`.
    ///
    /// # Errors
    /// When a pattern is not a valid glob.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let patterns: Vec<ExcludePattern> = patterns
            .iter()
            .map(|p| ExcludePattern::exact(p.as_ref()))
            .collect();
        Self::with_base(&patterns, Path::new("/"))
    }

    /// Compiles patterns (`#` lines and blank lines are skipped, surrounding blanks trimmed):
    /// - `/var/cache` is anchored: it matches that absolute path;
    /// - `./build` and `../x` are taken from `base` (a backup's current directory), as sources are;
    /// - any other pattern matches at any depth: `*.tmp` any name, `etc/ssl` any path ending so;
    /// - a trailing `/` matches directories only; `*` stays within one name, `**` crosses names.
    ///
    /// # Errors
    /// When a pattern is not a valid glob, or negated (`!`), which cairn does not support.
    pub fn with_base(patterns: &[ExcludePattern], base: &Path) -> Result<Self> {
        let mut out = ExcludeMatcher::default();
        let mut any_kind = GlobSetBuilder::new();
        let mut dirs_only = GlobSetBuilder::new();
        for p in patterns {
            let text = p.text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            if text.starts_with('!') {
                return Err(Error::invalid_input(format!(
                    "exclude pattern {text:?}: negated patterns (`!`) are not supported; \
                     narrow the pattern that excludes too much instead"
                )));
            }
            let dir_only = text.len() > 1 && text.ends_with('/');
            let body = if dir_only {
                text.trim_end_matches('/')
            } else {
                text
            };
            let full = absolute_glob(body, base);
            let glob = GlobBuilder::new(&full)
                .literal_separator(true)
                .case_insensitive(p.ignore_case)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    Error::invalid_input(format!(
                        "exclude pattern {text:?} is not a valid glob: {e}"
                    ))
                })?;
            let number = out.patterns.len();
            out.patterns.push(text.to_string());
            if dir_only {
                dirs_only.add(glob);
                out.dirs_only_numbers.push(number);
            } else {
                any_kind.add(glob);
                out.any_kind_numbers.push(number);
            }
        }
        let build = |b: GlobSetBuilder, n: usize| -> Result<Option<GlobSet>> {
            if n == 0 {
                return Ok(None);
            }
            b.build()
                .map(Some)
                .map_err(|e| Error::invalid_input(format!("exclude patterns: {e}")))
        };
        out.any_kind = build(any_kind, out.any_kind_numbers.len())?;
        out.dirs_only = build(dirs_only, out.dirs_only_numbers.len())?;
        Ok(out)
    }

    /// Reads patterns from a file, one per line.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn patterns_from_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid_input(format!("exclude file {}: {e}", path.display())))?;
        Ok(text.lines().map(str::to_string).collect())
    }

    /// The patterns, as given (trimmed, without comments), in pattern-number order.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The number of a pattern that matches `path`, whatever its kind (patterns without a trailing
    /// `/`); checked before the entry's status is read.
    pub fn matching_any_kind(&self, path: &Path) -> Option<usize> {
        first_match(self.any_kind.as_ref(), &self.any_kind_numbers, path)
    }

    /// The number of a directory-only pattern (`name/`) that matches the directory `path`.
    pub fn matching_dir(&self, path: &Path) -> Option<usize> {
        first_match(self.dirs_only.as_ref(), &self.dirs_only_numbers, path)
    }

    /// The number of a pattern that matches `path`, a directory when `is_dir`.
    pub fn matching(&self, path: &Path, is_dir: bool) -> Option<usize> {
        self.matching_any_kind(path)
            .or_else(|| is_dir.then(|| self.matching_dir(path)).flatten())
    }

    /// Whether `path` (a directory when `is_dir`) matches a pattern.
    pub fn is_excluded(&self, path: &Path, is_dir: bool) -> bool {
        self.matching(path, is_dir).is_some()
    }
}

/// Everything that leaves entries out of a backup, as the command line and the plan file give it.
#[derive(Clone, Debug, Default)]
pub struct ExcludeOptions {
    /// `--exclude` patterns.
    pub patterns: Vec<String>,
    /// `--exclude-file`: files of patterns, one per line.
    pub pattern_files: Vec<PathBuf>,
    /// `--iexclude` patterns (case ignored).
    pub ipatterns: Vec<String>,
    /// `--iexclude-file`.
    pub ipattern_files: Vec<PathBuf>,
    /// `--exclude-caches`: directories tagged by a valid `CACHEDIR.TAG`.
    pub caches: bool,
    /// `--exclude-if-present NAME[:HEADER]`.
    pub if_present: Vec<String>,
    /// `--exclude-larger-than`: bytes.
    pub larger_than: Option<u64>,
}

impl ExcludeOptions {
    /// Compiles the options into `options` (its `excludes`, `exclude_if_present` and
    /// `exclude_larger_than`); `./` patterns are taken from the current directory.
    ///
    /// # Errors
    /// An unreadable pattern file, an invalid pattern or tag file name, or no current directory.
    pub fn apply_to(&self, options: &mut crate::archive::BackupOptions) -> Result<()> {
        let mut patterns: Vec<ExcludePattern> =
            self.patterns.iter().map(ExcludePattern::exact).collect();
        for file in &self.pattern_files {
            let lines = ExcludeMatcher::patterns_from_file(file)?;
            patterns.extend(lines.into_iter().map(ExcludePattern::exact));
        }
        patterns.extend(self.ipatterns.iter().map(ExcludePattern::ignoring_case));
        for file in &self.ipattern_files {
            let lines = ExcludeMatcher::patterns_from_file(file)?;
            patterns.extend(lines.into_iter().map(ExcludePattern::ignoring_case));
        }
        let cwd = std::env::current_dir().map_err(|e| {
            Error::invalid_input(format!("cannot resolve relative exclude patterns: {e}"))
        })?;
        options.excludes = ExcludeMatcher::with_base(&patterns, &cwd)?;
        let mut tags = Vec::new();
        if self.caches {
            tags.push(TagFile::parse(CACHEDIR_TAG)?);
        }
        for spec in &self.if_present {
            tags.push(TagFile::parse(spec)?);
        }
        options.exclude_if_present = tags;
        options.exclude_larger_than = self.larger_than;
        Ok(())
    }
}

fn first_match(set: Option<&GlobSet>, numbers: &[usize], path: &Path) -> Option<usize> {
    let set = set?;
    // `is_match` first: most paths match nothing, and it allocates nothing.
    if !set.is_match(path) {
        return None;
    }
    set.matches(path).into_iter().map(|i| numbers[i]).min()
}

/// The glob over absolute paths that `pattern` means (see [`ExcludeMatcher::with_base`]).
fn absolute_glob(pattern: &str, base: &Path) -> String {
    if pattern.starts_with('/') {
        return pattern.to_string();
    }
    let dotted = pattern == "."
        || pattern == ".."
        || pattern.starts_with("./")
        || pattern.starts_with("../");
    if !dotted {
        return format!("**/{pattern}");
    }
    // The leading `.` and `..` components apply to the base, lexically (as for sources); the base's
    // own names are literal, the rest of the pattern is a glob below it.
    let mut dir = PathBuf::from("/");
    for c in base.components() {
        match c {
            Component::Normal(n) => dir.push(n),
            Component::ParentDir => {
                dir.pop();
            }
            _ => {}
        }
    }
    let mut rest = pattern;
    loop {
        let (step, tail) = rest.split_once('/').unwrap_or((rest, ""));
        match step {
            "." => {}
            ".." => {
                dir.pop();
            }
            _ => break,
        }
        rest = tail.trim_start_matches('/');
    }
    let dir = globset::escape(&dir.to_string_lossy());
    match (dir.as_str(), rest) {
        (d, "") => d.to_string(),
        ("/", r) => format!("/{r}"),
        (d, r) => format!("{d}/{r}"),
    }
}

/// A file whose presence marks a directory whose contents are left out (`--exclude-if-present
/// NAME[:HEADER]`, `--exclude-caches`): the directory and the tag file stay, as restic and tar keep
/// them, so the snapshot shows what was left out and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagFile {
    pub name: String,
    /// Bytes the file must start with, when given.
    pub header: Option<Vec<u8>>,
}

impl TagFile {
    /// Parses `NAME` or `NAME:HEADER`.
    ///
    /// # Errors
    /// When the name is empty or holds a `/`.
    pub fn parse(spec: &str) -> Result<TagFile> {
        let (name, header) = match spec.split_once(':') {
            Some((n, h)) => (n, Some(h.as_bytes().to_vec())),
            None => (spec, None),
        };
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::invalid_input(format!(
                "--exclude-if-present {spec:?}: give a file name, optionally followed by \
                 `:HEADER` (e.g. .nobackup or CACHEDIR.TAG:Signature: 8a477f59...)"
            )));
        }
        Ok(TagFile {
            name: name.to_string(),
            header,
        })
    }

    /// Whether the directory `dir` holds this tag (a regular file, starting with the header).
    pub fn marks(&self, dir: &Path) -> bool {
        let path = dir.join(&self.name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {}
            _ => return false,
        }
        let Some(header) = &self.header else {
            return true;
        };
        let mut start = vec![0u8; header.len()];
        std::fs::File::open(&path)
            .and_then(|mut f| f.read_exact(&mut start))
            .is_ok_and(|()| start == *header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str]) -> ExcludeMatcher {
        ExcludeMatcher::new(patterns).unwrap()
    }

    #[test]
    fn anchored_and_unanchored_patterns() {
        let x = m(&["*.tmp", "/var/cache/**", "# comment", "", "etc/ssl"]);
        assert!(x.is_excluded(Path::new("/home/a/x.tmp"), false));
        assert!(x.is_excluded(Path::new("/x.tmp"), false));
        assert!(x.is_excluded(Path::new("/var/cache/apt/pkg"), false));
        assert!(!x.is_excluded(Path::new("/var/lib/x"), false));
        assert!(!x.is_excluded(Path::new("/home/a/x.tmp/y"), false));
        // A relative pattern with a `/` matches any path that ends with it.
        assert!(x.is_excluded(Path::new("/home/me/etc/ssl"), true));
        assert!(x.is_excluded(Path::new("/etc/ssl"), true));
        assert!(!x.is_excluded(Path::new("/etc/ssl2"), true));
        assert!(
            !x.is_excluded(Path::new("/etc/ssl/certs"), false),
            "only the entry itself"
        );
        assert_eq!(x.patterns().len(), 3);
        assert!(ExcludeMatcher::new(&["a[b"]).is_err());
        assert!(ExcludeMatcher::new(&["!keep"]).is_err());
    }

    #[test]
    fn a_trailing_slash_matches_directories_only() {
        let x = m(&["ssl/"]);
        assert!(x.is_excluded(Path::new("/etc/ssl"), true));
        assert!(!x.is_excluded(Path::new("/etc/ssl"), false));
        assert_eq!(x.matching_any_kind(Path::new("/etc/ssl")), None);
        assert_eq!(x.matching_dir(Path::new("/etc/ssl")), Some(0));
    }

    #[test]
    fn dotted_patterns_are_taken_from_the_base() {
        let pats = [
            ExcludePattern::exact("./build"),
            ExcludePattern::exact("../other/*.log"),
        ];
        let x = ExcludeMatcher::with_base(&pats, Path::new("/home/me/[proj]")).unwrap();
        assert!(x.is_excluded(Path::new("/home/me/[proj]/build"), true));
        assert!(
            !x.is_excluded(Path::new("/home/me/p/build"), true),
            "base is literal"
        );
        assert!(!x.is_excluded(Path::new("/elsewhere/build"), true));
        assert!(x.is_excluded(Path::new("/home/me/other/a.log"), false));
    }

    #[test]
    fn case_is_ignored_on_request_and_numbers_follow_the_given_order() {
        let pats = [
            ExcludePattern::exact("*.TMP"),
            ExcludePattern::ignoring_case("thumbs.db"),
            ExcludePattern::exact("cache/"),
        ];
        let x = ExcludeMatcher::with_base(&pats, Path::new("/")).unwrap();
        assert_eq!(x.matching(Path::new("/a/Thumbs.DB"), false), Some(1));
        assert_eq!(x.matching(Path::new("/a/x.tmp"), false), None);
        assert_eq!(x.matching(Path::new("/a/x.TMP"), false), Some(0));
        assert_eq!(x.matching(Path::new("/a/cache"), true), Some(2));
    }

    #[test]
    fn tag_files_with_and_without_header() {
        let dir = tempfile::tempdir().unwrap();
        let tagged = dir.path().join("c");
        std::fs::create_dir(&tagged).unwrap();
        std::fs::write(
            tagged.join("CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55\n# cache\n",
        )
        .unwrap();
        let fake = dir.path().join("f");
        std::fs::create_dir(&fake).unwrap();
        std::fs::write(fake.join("CACHEDIR.TAG"), "not a tag").unwrap();
        let cachedir = TagFile::parse(CACHEDIR_TAG).unwrap();
        assert!(cachedir.marks(&tagged));
        assert!(!cachedir.marks(&fake));
        assert!(!cachedir.marks(dir.path()));
        let any = TagFile::parse("CACHEDIR.TAG").unwrap();
        assert!(any.marks(&fake));
        assert!(TagFile::parse("a/b").is_err());
        assert!(TagFile::parse(":x").is_err());
    }
}
