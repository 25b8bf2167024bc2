//! Specifications of the config store, on real temporary dirs.

use super::*;

const TEXT: &str = "[[worker]]\nname = \"a\"\ncommand = \"true\"\n";

fn config(version: u64) -> VersionedConfig {
    VersionedConfig::new(version, TEXT, "node-a", 1_700_000_000_000).unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn expect_corrupt(store: &ConfigStore) -> (PathBuf, String) {
    match store.load().unwrap() {
        Loaded::Corrupt {
            path,
            set_aside_as,
            reason,
        } => {
            assert_eq!(path, store.path());
            (set_aside_as, reason)
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_new_store_is_empty_and_creates_its_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/herd-data");
    let store = ConfigStore::open(&dir).unwrap();
    assert!(dir.is_dir());
    assert_eq!(store.load().unwrap(), Loaded::Empty);
    assert_eq!(store.path(), dir.join(STORE_FILE));
}

#[test]
fn a_saved_config_loads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ConfigStore::open(tmp.path()).unwrap();
    store.save(&config(3)).unwrap();
    assert_eq!(store.load().unwrap(), Loaded::Config(config(3)));
    let reopened = ConfigStore::open(tmp.path()).unwrap();
    assert_eq!(reopened.load().unwrap(), Loaded::Config(config(3)));
}

#[test]
fn save_replaces_atomically_and_leaves_no_temp_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ConfigStore::open(tmp.path()).unwrap();
    store.save(&config(1)).unwrap();
    store.save(&config(2)).unwrap();
    assert_eq!(store.load().unwrap(), Loaded::Config(config(2)));
    assert_eq!(names_in(tmp.path()), [STORE_FILE]);
}

#[test]
fn a_truncated_store_file_is_set_aside_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ConfigStore::open(tmp.path()).unwrap();
    store.save(&config(1)).unwrap();
    let whole = fs::read(store.path()).unwrap();
    let cut = &whole[..whole.len() - 7];
    fs::write(store.path(), cut).unwrap();

    let (aside, reason) = expect_corrupt(&store);
    assert!(reason.starts_with("truncated: "), "{reason}");
    assert!(aside
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("cluster-config.corrupt-"));
    assert_eq!(fs::read(&aside).unwrap(), cut, "nothing is lost");
    assert!(!store.path().exists());
    assert_eq!(store.load().unwrap(), Loaded::Empty);
}

#[test]
fn a_flipped_byte_is_reported_as_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ConfigStore::open(tmp.path()).unwrap();
    store.save(&config(1)).unwrap();
    let mut bytes = fs::read(store.path()).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    fs::write(store.path(), &bytes).unwrap();
    let (_, reason) = expect_corrupt(&store);
    assert!(reason.starts_with("checksum mismatch"), "{reason}");
}

#[test]
fn an_empty_or_binary_file_is_reported_as_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ConfigStore::open(tmp.path()).unwrap();
    fs::write(store.path(), b"").unwrap();
    let (_, reason) = expect_corrupt(&store);
    assert!(reason.contains("no header line"), "{reason}");
    fs::write(store.path(), [0xff, 0xfe, b'\n']).unwrap();
    let (_, reason) = expect_corrupt(&store);
    assert!(reason.starts_with("not UTF-8"), "{reason}");
}

#[test]
fn corrupt_files_set_aside_in_the_same_millisecond_keep_distinct_names() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ConfigStore::open(tmp.path()).unwrap();
    let mut asides = Vec::new();
    for i in 0..3 {
        fs::write(store.path(), format!("garbage {i}")).unwrap();
        asides.push(expect_corrupt(&store).0);
    }
    asides.sort();
    asides.dedup();
    assert_eq!(asides.len(), 3);
    assert_eq!(names_in(tmp.path()).len(), 3);
}

#[test]
fn a_save_after_corruption_restores_a_good_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ConfigStore::open(tmp.path()).unwrap();
    fs::write(store.path(), "garbage").unwrap();
    expect_corrupt(&store);
    store.save(&config(4)).unwrap();
    assert_eq!(store.load().unwrap(), Loaded::Config(config(4)));
}

#[test]
fn open_removes_temp_files_of_an_interrupted_save() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(format!("{TEMP_PREFIX}123-0")), "half").unwrap();
    let store = ConfigStore::open(tmp.path()).unwrap();
    assert_eq!(names_in(tmp.path()), Vec::<String>::new());
    assert_eq!(store.load().unwrap(), Loaded::Empty);
}

#[test]
fn opening_a_file_as_data_dir_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let err = ConfigStore::open(&file).unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }));
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_failed_save_names_the_file_and_keeps_the_old_config() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ConfigStore::open(tmp.path()).unwrap();
    store.save(&config(1)).unwrap();
    // A directory in place of the target makes the rename fail.
    let blocked = ConfigStore {
        dir: tmp.path().to_owned(),
        file: tmp.path().join("blocked"),
    };
    fs::create_dir(tmp.path().join("blocked/")).unwrap();
    fs::write(tmp.path().join("blocked/x"), "x").unwrap();
    let err = blocked.save(&config(2)).unwrap_err();
    assert!(err.to_string().contains("blocked"), "{err}");
    assert_eq!(store.load().unwrap(), Loaded::Config(config(1)));
    assert_eq!(names_in(tmp.path()), ["blocked", STORE_FILE]);
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_data_dir_is_created_0700_and_every_file_written_0600() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("parent/herd-data");
    let store = ConfigStore::open(&dir).unwrap();
    assert_eq!(mode(&dir), DIR_MODE);
    assert_eq!(DIR_MODE, 0o700);
    store.save(&config(1)).unwrap();
    assert_eq!(mode(store.path()), FILE_MODE);
    assert_eq!(FILE_MODE, 0o600);

    // A file left readable by an older herd is set aside readable by herd alone.
    fs::write(store.path(), "garbage").unwrap();
    fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
    let (aside, _) = expect_corrupt(&store);
    assert_eq!(mode(&aside), FILE_MODE);
    store.save(&config(2)).unwrap();
    assert_eq!(mode(store.path()), FILE_MODE);
}

#[test]
fn an_existing_data_dir_keeps_its_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
    let store = ConfigStore::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o750);
    store.save(&config(1)).unwrap();
    assert_eq!(mode(store.path()), FILE_MODE);
}
