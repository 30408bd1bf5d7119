//! The U-Boot environment, in the on-media format U-Boot and libubootenv (`fw_printenv`,
//! `fw_setenv`) use, and their `fw_env.config` file.
//!
//! One copy of the environment is a block of `env_size` bytes:
//!
//! * a CRC-32 (ISO-HDLC, zlib's `crc32`) of the data area, little-endian;
//! * for a redundant environment only, one flags byte telling which copy is newer;
//! * the data area (the rest of the block): `name=value\0` entries, then one more `\0`, then
//!   padding up to the end. The CRC covers the padding too, so it is kept as read; freshly
//!   written blocks are padded with `0x00`, which is what `fw_setenv` 0.3.2 writes in practice
//!   (its buffer is not explicitly filled, see the note in [`serialize`]).
//!
//! A redundant environment has two such copies (two lines in `fw_env.config`). A writer always
//! overwrites the copy that is *not* current, with the next flags value, so a power cut in the
//! middle of a write leaves a copy with a bad CRC (or, if the part not written already held the
//! same bytes, a complete one) next to the intact previous one. Which copy
//! is current follows libubootenv's rules exactly ([`current_index`]); a single copy written in
//! place has no such protection.
//!
//! Everything here is pure; reading and writing the devices is the agent's job.

use std::collections::BTreeMap;

/// Bytes of the CRC at the start of every copy.
pub const CRC_LEN: usize = 4;

/// The CRC U-Boot and libubootenv use (zlib's `crc32`).
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Bytes before the data area: the CRC, plus the flags byte when redundant.
pub fn header_len(redundant: bool) -> usize {
    if redundant { CRC_LEN + 1 } else { CRC_LEN }
}

/// How the flags byte of a redundant environment orders the two copies.
///
/// libubootenv picks the scheme from the device: NOR flash uses [`FlagScheme::Boolean`] (the
/// old copy's flag is cleared in place, which NOR can do without an erase); files, block
/// devices, NAND and UBI use [`FlagScheme::Incremental`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagScheme {
    /// Each write stores the current copy's flags plus one (wrapping at 255).
    Incremental,
    /// `1` marks the active copy, `0` an obsolete one (`0xFF`: erased flash, treated as newest).
    Boolean,
}

/// One copy of the environment, with a valid CRC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvCopy {
    /// The variables (a `.flags` entry, U-Boot's variable attributes, is kept as a variable so
    /// it survives a rewrite).
    pub vars: BTreeMap<String, String>,
    /// The flags byte (`None` for a non-redundant environment, which has none).
    pub flags: Option<u8>,
}

/// The current copy of a redundant environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Which copy (0: the first line of `fw_env.config`, 1: the second).
    pub index: usize,
    pub copy: EnvCopy,
}

/// Where the next write of a redundant environment goes, exactly as `fw_setenv` would do it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritePlan {
    /// The copy to overwrite (the one that is not current).
    pub index: usize,
    /// The flags byte to store in it.
    pub flags: u8,
}

/// Why a U-Boot environment copy, or `fw_env.config`, cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UbootEnvError {
    /// `env_size` leaves no room for a data area.
    #[error(
        "an environment size of {env_size} bytes leaves no room for data after the {header}-byte header"
    )]
    TooSmall { env_size: usize, header: usize },
    /// Fewer bytes than `env_size` could be read (device or file too small, never written).
    #[error("only {len} of the {env_size} bytes of the environment could be read")]
    Short { len: usize, env_size: usize },
    /// The stored CRC does not match the data: torn or never written.
    #[error("bad CRC (stored {stored:#010x}, computed {computed:#010x}): torn or never written")]
    BadCrc { stored: u32, computed: u32 },
    /// The CRC is right but the data cannot be read (not written by U-Boot or libubootenv).
    #[error("the CRC is valid but the data is unreadable: {reason}")]
    Undecodable {
        /// The copy's flags byte, so the copy still takes part in choosing the current one.
        flags: Option<u8>,
        reason: String,
    },
    /// Neither copy of a redundant environment is valid.
    #[error(
        "neither copy of the U-Boot environment is valid (first copy: {first}; second copy: {second})"
    )]
    NoValidCopy {
        first: Box<UbootEnvError>,
        second: Box<UbootEnvError>,
    },
    /// A variable U-Boot could not read back.
    #[error("{name:?} cannot be a U-Boot environment variable name: {reason}")]
    BadName { name: String, reason: &'static str },
    /// A value U-Boot could not hold (entries end at a NUL byte).
    #[error("the value of U-Boot environment variable {name} contains a NUL byte")]
    BadValue { name: String },
    /// The variables do not fit in the data area.
    #[error(
        "the variables need {needed} bytes but the U-Boot environment data area holds {available} (env_size {env_size}); remove or shorten variables"
    )]
    TooLarge {
        needed: usize,
        available: usize,
        env_size: usize,
    },
    /// A malformed `fw_env.config`.
    #[error("fw_env.config line {line}: {reason}")]
    Config { line: usize, reason: String },
}

/// Parses one copy of the environment: `block` as read from the device, `env_size` as
/// configured. Fails on a short read, a bad CRC, or (with [`UbootEnvError::Undecodable`])
/// data with a valid CRC that is not a well-formed environment.
///
/// As in libubootenv and U-Boot: entries without `=` and entries with an empty name are
/// skipped, and for a name stored twice the last value wins.
pub fn parse_copy(
    block: &[u8],
    env_size: usize,
    redundant: bool,
) -> Result<EnvCopy, UbootEnvError> {
    let header = header_len(redundant);
    if env_size <= header {
        return Err(UbootEnvError::TooSmall { env_size, header });
    }
    if block.len() < env_size {
        return Err(UbootEnvError::Short {
            len: block.len(),
            env_size,
        });
    }
    let block = &block[..env_size];
    let stored = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
    let data = &block[header..];
    let computed = CRC32.checksum(data);
    if stored != computed {
        return Err(UbootEnvError::BadCrc { stored, computed });
    }
    let flags = redundant.then_some(block[CRC_LEN]);
    let vars = decode(data).map_err(|reason| UbootEnvError::Undecodable { flags, reason })?;
    Ok(EnvCopy { vars, flags })
}

/// Reads the `name=value\0` entries of a data area, up to the empty entry that ends them.
fn decode(data: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    let mut pos = 0;
    loop {
        let Some(len) = data[pos..].iter().position(|&b| b == 0) else {
            return Err(format!(
                "the entry at data offset {pos} is not terminated (no NUL before the end)"
            ));
        };
        if len == 0 {
            return Ok(vars);
        }
        let entry = &data[pos..pos + len];
        if let Some(eq) = entry.iter().position(|&b| b == b'=')
            && eq > 0
        {
            let (Ok(name), Ok(value)) = (
                std::str::from_utf8(&entry[..eq]),
                std::str::from_utf8(&entry[eq + 1..]),
            ) else {
                return Err(format!("the entry at data offset {pos} is not valid UTF-8"));
            };
            vars.insert(name.to_owned(), value.to_owned());
        }
        pos += len + 1;
    }
}

/// Which of two valid copies of a redundant environment is current, from their flags bytes:
/// libubootenv 0.3.2's rule (`libuboot_load` in `src/uboot_env.c`), which is also U-Boot's.
///
/// The higher flags value wins, the first copy on a tie; with [`FlagScheme::Incremental`] the
/// counter's wrap is recognised (`0x00` is newer than `0xFF`); with [`FlagScheme::Boolean`] an
/// erased `0xFF` flag wins.
pub fn current_index(flags: [u8; 2], scheme: FlagScheme) -> usize {
    let [f0, f1] = flags;
    let higher = usize::from(f1 > f0);
    match scheme {
        FlagScheme::Incremental if f0 == 0xFF && f1 == 0 => 1,
        FlagScheme::Incremental if f1 == 0xFF && f0 == 0 => 0,
        FlagScheme::Boolean if f1 == 0xFF => 1,
        FlagScheme::Boolean if f0 == 0xFF => 0,
        _ => higher,
    }
}

/// The flags value a write stores, given the current copy's (what `fw_setenv` stores).
pub fn next_flags(current: u8, scheme: FlagScheme) -> u8 {
    match scheme {
        FlagScheme::Incremental => current.wrapping_add(1),
        FlagScheme::Boolean => 1,
    }
}

/// Chooses the current copy of a redundant environment: a copy that failed to parse with a bad
/// CRC (or a short read) is ignored; of two valid copies the flags decide
/// ([`current_index`]). A current copy whose data is undecodable is an error rather than a
/// reason to fall back to the older copy, because U-Boot would use the newer one.
pub fn select(
    copies: [Result<EnvCopy, UbootEnvError>; 2],
    scheme: FlagScheme,
) -> Result<Selected, UbootEnvError> {
    match copies {
        [Err(first), Err(second)]
            if crc_valid_flags(&first).is_none() && crc_valid_flags(&second).is_none() =>
        {
            Err(UbootEnvError::NoValidCopy {
                first: Box::new(first),
                second: Box::new(second),
            })
        }
        [c0, c1] => {
            let flags = |c: &Result<EnvCopy, UbootEnvError>| match c {
                Ok(copy) => Some(copy.flags.unwrap_or(0)),
                Err(e) => crc_valid_flags(e),
            };
            let index = match (flags(&c0), flags(&c1)) {
                (Some(f0), Some(f1)) => current_index([f0, f1], scheme),
                (Some(_), None) => 0,
                _ => 1,
            };
            let copy = if index == 0 { c0 } else { c1 }?;
            Ok(Selected { index, copy })
        }
    }
}

/// The flags of a copy that failed to parse although its CRC is valid (it still counts when
/// choosing the current copy); `None` for a copy to ignore.
fn crc_valid_flags(e: &UbootEnvError) -> Option<u8> {
    match e {
        UbootEnvError::Undecodable { flags, .. } => Some(flags.unwrap_or(0)),
        _ => None,
    }
}

/// Where the next write of a redundant environment goes, from the two copies as read
/// (`blocks`, `env_size` bytes each; shorter if the read was short): the copy that is not
/// current, with [`next_flags`] of the current copy's flags.
///
/// With no valid copy, `fw_setenv` writes the second copy with the first copy's (invalid)
/// flags byte plus one; this does the same so both tools agree on what comes next.
pub fn write_plan(blocks: [&[u8]; 2], env_size: usize, scheme: FlagScheme) -> WritePlan {
    let valid = |b: &[u8]| {
        matches!(
            parse_copy(b, env_size, true),
            Ok(_) | Err(UbootEnvError::Undecodable { .. })
        )
        .then(|| b[CRC_LEN])
    };
    let current = match (valid(blocks[0]), valid(blocks[1])) {
        (Some(f0), Some(f1)) => Some((current_index([f0, f1], scheme), [f0, f1])),
        (Some(f0), None) => Some((0, [f0, 0])),
        (None, Some(f1)) => Some((1, [0, f1])),
        (None, None) => None,
    };
    match current {
        Some((index, flags)) => WritePlan {
            index: 1 - index,
            flags: next_flags(flags[index], scheme),
        },
        None => WritePlan {
            index: 1,
            flags: next_flags(blocks[0].get(CRC_LEN).copied().unwrap_or(0), scheme),
        },
    }
}

/// Writes `vars` as one copy of `env_size` bytes: with a flags byte when `flags` is `Some`
/// (redundant environment), without one otherwise. Entries are in byte order of the names,
/// which is also the order libubootenv writes them in.
///
/// The rest of the data area is padded with `0x00`. libubootenv 0.3.2 (`libuboot_env_store`)
/// leaves its buffer unfilled after the terminating NUL, which in practice is zeros; the CRC
/// covers whatever is there, so readers do not care.
pub fn serialize(
    vars: &BTreeMap<String, String>,
    env_size: usize,
    flags: Option<u8>,
) -> Result<Vec<u8>, UbootEnvError> {
    let header = header_len(flags.is_some());
    if env_size <= header {
        return Err(UbootEnvError::TooSmall { env_size, header });
    }
    let mut data = Vec::with_capacity(env_size - header);
    for (name, value) in vars {
        check_name(name)?;
        if value.contains('\0') {
            return Err(UbootEnvError::BadValue { name: name.clone() });
        }
        data.extend_from_slice(name.as_bytes());
        data.push(b'=');
        data.extend_from_slice(value.as_bytes());
        data.push(0);
    }
    data.push(0);
    let available = env_size - header;
    if data.len() > available {
        return Err(UbootEnvError::TooLarge {
            needed: data.len(),
            available,
            env_size,
        });
    }
    data.resize(available, 0);
    let mut block = Vec::with_capacity(env_size);
    block.extend_from_slice(&CRC32.checksum(&data).to_le_bytes());
    block.extend(flags);
    block.extend_from_slice(&data);
    Ok(block)
}

/// Refuses names U-Boot would read back differently (or not at all).
fn check_name(name: &str) -> Result<(), UbootEnvError> {
    let reason = if name.is_empty() {
        "it is empty (U-Boot skips such entries)"
    } else if name.contains('=') {
        "it contains `=`, which ends a name"
    } else if name.contains('\0') {
        "it contains a NUL byte, which ends an entry"
    } else {
        return Ok(());
    };
    Err(UbootEnvError::BadName {
        name: name.to_owned(),
        reason,
    })
}

/// One line of `fw_env.config`: where one copy of the environment is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvDevice {
    /// Device or file path, as written.
    pub device: String,
    /// Byte offset of the copy; negative counts back from the end of the device.
    pub offset: i64,
    /// Size of the copy in bytes.
    pub env_size: usize,
    /// Erase-sector size (MTD only; ignored for files and block devices).
    pub sector_size: Option<u64>,
    /// Number of sectors (NAND only).
    pub sectors: Option<u64>,
}

/// A parsed `fw_env.config`: one device (single copy) or two (redundant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwEnvConfig {
    /// One or two devices, in file order (copy 0, copy 1).
    pub devices: Vec<EnvDevice>,
}

impl FwEnvConfig {
    /// Whether the environment has two copies.
    pub fn is_redundant(&self) -> bool {
        self.devices.len() == 2
    }

    /// The size of each copy (the same for both, checked when parsing).
    pub fn env_size(&self) -> usize {
        self.devices[0].env_size
    }
}

/// Parses `fw_env.config`: per line `DEVICE OFFSET ENV_SIZE [SECTOR_SIZE [SECTORS]]`,
/// whitespace-separated, `#` starting a comment.
///
/// Numbers are read as U-Boot's and libubootenv's tools read them (`sscanf` with
/// `%lli %zx %zx %lx`): OFFSET as a C integer (`0x` hex, leading-`0` octal, else decimal,
/// optionally negative), while ENV_SIZE, SECTOR_SIZE and SECTORS are always hexadecimal, with
/// or without `0x` (so `4000` means 0x4000). Stricter than the tools, a line with a missing or
/// malformed field, more than two devices, or copies of different sizes is refused, with its
/// line number.
pub fn parse_config(text: &str) -> Result<FwEnvConfig, UbootEnvError> {
    let mut devices: Vec<EnvDevice> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let bad = |reason: String| UbootEnvError::Config {
            line: line_no,
            reason,
        };
        let fields: Vec<&str> = line
            .split_whitespace()
            .take_while(|f| !f.starts_with('#'))
            .collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() < 3 {
            return Err(bad(format!(
                "expected `DEVICE OFFSET ENV_SIZE [SECTOR_SIZE [SECTORS]]`, found {} field(s)",
                fields.len()
            )));
        }
        if fields.len() > 5 {
            return Err(bad(format!(
                "expected at most 5 fields (DEVICE OFFSET ENV_SIZE SECTOR_SIZE SECTORS), found {}",
                fields.len()
            )));
        }
        let offset = parse_c_int(fields[1])
            .ok_or_else(|| bad(format!("offset {:?} is not a number", fields[1])))?;
        let hex = |what: &str, s: &str| {
            parse_hex(s).ok_or_else(|| {
                bad(format!(
                    "{what} {s:?} is not a hexadecimal number (the tools read it as hex, `0x` optional)"
                ))
            })
        };
        let env_size = hex("environment size", fields[2])?;
        let env_size = usize::try_from(env_size)
            .map_err(|_| bad(format!("environment size {:?} is too large", fields[2])))?;
        let header = header_len(true);
        if env_size <= header {
            return Err(bad(format!(
                "environment size {env_size} is too small (it must exceed the {header}-byte header)"
            )));
        }
        let sector_size = fields.get(3).map(|s| hex("sector size", s)).transpose()?;
        let sectors = fields
            .get(4)
            .map(|s| hex("number of sectors", s))
            .transpose()?;
        if devices.len() == 2 {
            return Err(bad(
                "a third device: fw_env.config describes one copy or two (redundant)".into(),
            ));
        }
        if let Some(first) = devices.first()
            && first.env_size != env_size
        {
            return Err(bad(format!(
                "environment size {env_size:#x} differs from the first copy's {:#x}; both copies must be the same size",
                first.env_size
            )));
        }
        devices.push(EnvDevice {
            device: fields[0].to_owned(),
            offset,
            env_size,
            sector_size,
            sectors,
        });
    }
    if devices.is_empty() {
        return Err(UbootEnvError::Config {
            line: text.lines().count(),
            reason: "no device line (expected `DEVICE OFFSET ENV_SIZE`)".into(),
        });
    }
    Ok(FwEnvConfig { devices })
}

/// A C integer as `%lli` reads it: optional sign, then `0x` hex, leading-`0` octal or decimal.
fn parse_c_int(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        u64::from_str_radix(nonempty_digits(hex)?, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        u64::from_str_radix(nonempty_digits(&digits[1..])?, 8).ok()?
    } else {
        nonempty_digits(digits)?.parse::<u64>().ok()?
    };
    let value = i64::try_from(magnitude).ok()?;
    Some(if negative { -value } else { value })
}

/// A hexadecimal number as `%x` reads it: `0x` optional.
fn parse_hex(s: &str) -> Option<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(nonempty_digits(digits)?, 16).ok()
}

/// `from_str_radix` accepts a sign; the fields here must be bare digits.
fn nonempty_digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 0x100;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn copy(v: &BTreeMap<String, String>, flags: u8) -> Vec<u8> {
        serialize(v, SIZE, Some(flags)).unwrap()
    }

    #[test]
    fn crc_is_zlib_crc32() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(CRC32.checksum(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn layout_of_redundant_and_single_copies() {
        let v = vars(&[("b", "2"), ("a", "1")]);
        let red = serialize(&v, SIZE, Some(7)).unwrap();
        assert_eq!(red.len(), SIZE);
        assert_eq!(red[4], 7);
        assert_eq!(&red[5..14], b"a=1\0b=2\0\0");
        assert!(red[14..].iter().all(|&b| b == 0));
        let crc = u32::from_le_bytes(red[..4].try_into().unwrap());
        assert_eq!(crc, CRC32.checksum(&red[5..]));

        let single = serialize(&v, SIZE, None).unwrap();
        assert_eq!(single.len(), SIZE);
        assert_eq!(&single[4..13], b"a=1\0b=2\0\0");
        let crc = u32::from_le_bytes(single[..4].try_into().unwrap());
        assert_eq!(crc, CRC32.checksum(&single[4..]));
    }

    #[test]
    fn round_trips() {
        let v = vars(&[
            ("BOOT_ORDER", "A B"),
            ("BOOT_A_LEFT", "3"),
            ("bootcmd", "run a; run b"),
            ("multi", "x\ny"),
            ("eq", "a=b"),
            ("empty", ""),
            (".flags", "BOOT_ORDER:sa"),
        ]);
        for redundant in [false, true] {
            let flags = redundant.then_some(42);
            let block = serialize(&v, SIZE, flags).unwrap();
            let parsed = parse_copy(&block, SIZE, redundant).unwrap();
            assert_eq!(
                parsed,
                EnvCopy {
                    vars: v.clone(),
                    flags
                }
            );
        }
        let empty = serialize(&BTreeMap::new(), SIZE, Some(0)).unwrap();
        assert_eq!(
            parse_copy(&empty, SIZE, true).unwrap().vars,
            BTreeMap::new()
        );
    }

    #[test]
    fn crc_corruption_is_detected_anywhere_in_the_data() {
        let block = copy(&vars(&[("a", "1")]), 1);
        for i in [0, 3, 5, 7, SIZE / 2, SIZE - 1] {
            let mut bad = block.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(
                    parse_copy(&bad, SIZE, true),
                    Err(UbootEnvError::BadCrc { .. })
                ),
                "byte {i}"
            );
        }
        // The flags byte is outside the CRC (libubootenv computes it over the data area only),
        // which is what lets NOR flash clear it in place.
        let mut flags_changed = block.clone();
        flags_changed[CRC_LEN] = 0;
        assert_eq!(
            parse_copy(&flags_changed, SIZE, true).unwrap().flags,
            Some(0)
        );
    }

    /// Variables whose entries fill most of the data area, so both halves of a copy differ.
    fn big(tag: &str) -> BTreeMap<String, String> {
        vars(&[("v", &tag.repeat(SIZE - 20))])
    }

    /// What a write of `new` over `old` torn in the middle leaves (as `Disk` simulates it).
    fn torn(new: &[u8], old: &[u8]) -> Vec<u8> {
        let mut b = new[..new.len() / 2].to_vec();
        b.extend_from_slice(&old[new.len() / 2..]);
        b
    }

    #[test]
    fn torn_zero_filled_erased_and_short_copies_are_invalid() {
        let old = copy(&big("o"), 1);
        let new = copy(&big("n"), 3);
        assert!(matches!(
            parse_copy(&torn(&new, &old), SIZE, true),
            Err(UbootEnvError::BadCrc { .. })
        ));
        assert!(matches!(
            parse_copy(&torn(&new, &[0; SIZE]), SIZE, true),
            Err(UbootEnvError::BadCrc { .. })
        ));
        for fill in [0x00, 0xFF] {
            assert!(matches!(
                parse_copy(&[fill; SIZE], SIZE, true),
                Err(UbootEnvError::BadCrc { .. })
            ));
            assert!(matches!(
                parse_copy(&[fill; SIZE], SIZE, false),
                Err(UbootEnvError::BadCrc { .. })
            ));
        }
        assert_eq!(
            parse_copy(&old[..SIZE - 1], SIZE, true),
            Err(UbootEnvError::Short {
                len: SIZE - 1,
                env_size: SIZE
            })
        );
    }

    #[test]
    fn decoding_follows_libubootenv() {
        // Entries without `=` or with an empty name are skipped; the last duplicate wins;
        // anything after the terminating empty entry is padding.
        let mut data = b"junk\0=x\0a=1\0a=2\0b=\0\0c=ignored\0".to_vec();
        data.resize(SIZE - 5, 0xFF);
        let mut block = CRC32.checksum(&data).to_le_bytes().to_vec();
        block.push(3);
        block.extend_from_slice(&data);
        let parsed = parse_copy(&block, SIZE, true).unwrap();
        assert_eq!(parsed.vars, vars(&[("a", "2"), ("b", "")]));
        assert_eq!(parsed.flags, Some(3));
    }

    #[test]
    fn valid_crc_with_unreadable_data_is_undecodable() {
        for data in [vec![b'a'; SIZE - 5], {
            let mut d = b"a=\xff\0\0".to_vec();
            d.resize(SIZE - 5, 0);
            d
        }] {
            let mut block = CRC32.checksum(&data).to_le_bytes().to_vec();
            block.push(9);
            block.extend_from_slice(&data);
            assert!(matches!(
                parse_copy(&block, SIZE, true),
                Err(UbootEnvError::Undecodable { flags: Some(9), .. })
            ));
        }
    }

    #[test]
    fn incremental_selection_with_wrap_around() {
        let s = FlagScheme::Incremental;
        assert_eq!(current_index([1, 2], s), 1);
        assert_eq!(current_index([2, 1], s), 0);
        assert_eq!(current_index([5, 5], s), 0);
        assert_eq!(current_index([0xFE, 0xFF], s), 1);
        assert_eq!(current_index([0xFF, 0x00], s), 1);
        assert_eq!(current_index([0x00, 0xFF], s), 0);
        assert_eq!(current_index([0x00, 0x01], s), 1);
        // Walk the counter all the way around twice: each write goes to the other copy and
        // becomes current.
        let mut flags = [0u8, 0u8];
        let mut current = current_index(flags, s);
        for _ in 0..520 {
            let target = 1 - current;
            flags[target] = next_flags(flags[current], s);
            current = current_index(flags, s);
            assert_eq!(current, target, "{flags:?}");
        }
    }

    #[test]
    fn boolean_selection() {
        let s = FlagScheme::Boolean;
        assert_eq!(current_index([1, 0], s), 0);
        assert_eq!(current_index([0, 1], s), 1);
        assert_eq!(current_index([0, 0xFF], s), 1);
        assert_eq!(current_index([0xFF, 0], s), 0);
        assert_eq!(current_index([1, 1], s), 0);
        assert_eq!(next_flags(0, s), 1);
        assert_eq!(next_flags(1, s), 1);
        assert_eq!(next_flags(0xFF, FlagScheme::Incremental), 0);
    }

    #[test]
    fn select_prefers_newer_valid_copy_and_ignores_bad_ones() {
        let old = vars(&[("v", "old")]);
        let new = vars(&[("v", "new")]);
        let parse = |b: &[u8]| parse_copy(b, SIZE, true);
        let s = FlagScheme::Incremental;

        let got = select([parse(&copy(&old, 4)), parse(&copy(&new, 5))], s).unwrap();
        assert_eq!((got.index, got.copy.vars), (1, new.clone()));

        let got = select([parse(&copy(&new, 0)), parse(&copy(&old, 0xFF))], s).unwrap();
        assert_eq!((got.index, got.copy.vars), (0, new.clone()));

        // The newer copy torn over what that copy held before: the older one is current.
        let (older, newer) = (copy(&big("o"), 4), copy(&big("n"), 5));
        let torn_newer = torn(&newer, &copy(&big("p"), 3));
        let got = select([parse(&older), parse(&torn_newer)], s).unwrap();
        assert_eq!((got.index, got.copy.vars), (0, big("o")));
        let got = select([parse(&[0; SIZE]), parse(&copy(&old, 4))], s).unwrap();
        assert_eq!(got.index, 1);

        // Both bad: both reasons are given.
        let err = select([parse(&[0; SIZE]), parse(&copy(&old, 1)[..10])], s).unwrap_err();
        let UbootEnvError::NoValidCopy { first, second } = &err else {
            panic!("{err}");
        };
        assert!(matches!(**first, UbootEnvError::BadCrc { .. }));
        assert!(matches!(**second, UbootEnvError::Short { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("first copy: bad CRC") && msg.contains("second copy: only 10"),
            "{msg}"
        );
    }

    #[test]
    fn undecodable_current_copy_is_an_error_not_a_fallback() {
        let mut data = vec![b'a'; SIZE - 5];
        data[0] = b'x';
        let mut bad = CRC32.checksum(&data).to_le_bytes().to_vec();
        bad.push(9);
        bad.extend_from_slice(&data);
        let old = copy(&vars(&[("v", "old")]), 8);
        let parse = |b: &[u8]| parse_copy(b, SIZE, true);
        assert!(matches!(
            select([parse(&old), parse(&bad)], FlagScheme::Incremental),
            Err(UbootEnvError::Undecodable { .. })
        ));
        // When it is the older copy it does not matter.
        let newer = copy(&vars(&[("v", "new")]), 10);
        let got = select([parse(&newer), parse(&bad)], FlagScheme::Incremental).unwrap();
        assert_eq!(got.index, 0);
    }

    #[test]
    fn write_plan_alternates_like_fw_setenv() {
        let s = FlagScheme::Incremental;
        let v = vars(&[("a", "1")]);
        let zero = [0u8; SIZE];
        // Nothing valid: the second copy, with the first copy's flags byte plus one.
        assert_eq!(
            write_plan([&zero, &zero], SIZE, s),
            WritePlan { index: 1, flags: 1 }
        );
        let mut junk = [0u8; SIZE];
        junk[CRC_LEN] = 0x41;
        assert_eq!(
            write_plan([&junk, &zero], SIZE, s),
            WritePlan {
                index: 1,
                flags: 0x42
            }
        );
        assert_eq!(
            write_plan([&zero[..3], &zero[..0]], SIZE, s),
            WritePlan { index: 1, flags: 1 }
        );
        // One valid: the other one.
        assert_eq!(
            write_plan([&zero, &copy(&v, 1)], SIZE, s),
            WritePlan { index: 0, flags: 2 }
        );
        assert_eq!(
            write_plan([&copy(&v, 9), &zero], SIZE, s),
            WritePlan {
                index: 1,
                flags: 10
            }
        );
        // Both valid: overwrite the older, wrapping the counter.
        assert_eq!(
            write_plan([&copy(&v, 0xFF), &copy(&v, 0xFE)], SIZE, s),
            WritePlan { index: 1, flags: 0 }
        );
        assert_eq!(
            write_plan([&copy(&v, 0xFF), &copy(&v, 0)], SIZE, s),
            WritePlan { index: 0, flags: 1 }
        );
    }

    #[test]
    fn oversize_and_bad_names_are_refused() {
        // Data area of SIZE - 5 bytes: one entry of n bytes plus its NUL plus the final NUL.
        let fits = "x".repeat(SIZE - 5 - 4);
        let v = vars(&[("a", &fits)]);
        let block = serialize(&v, SIZE, Some(1)).unwrap();
        assert_eq!(parse_copy(&block, SIZE, true).unwrap().vars, v);
        let err = serialize(&vars(&[("a", &format!("{fits}x"))]), SIZE, Some(1)).unwrap_err();
        assert_eq!(
            err,
            UbootEnvError::TooLarge {
                needed: SIZE - 4,
                available: SIZE - 5,
                env_size: SIZE
            }
        );
        // The same variables fit a single copy, which has no flags byte.
        assert!(serialize(&vars(&[("a", &format!("{fits}x"))]), SIZE, None).is_ok());
        for name in ["", "a=b", "a\0"] {
            assert!(matches!(
                serialize(&vars(&[(name, "v")]), SIZE, None),
                Err(UbootEnvError::BadName { .. })
            ));
        }
        assert!(matches!(
            serialize(&vars(&[("a", "v\0")]), SIZE, None),
            Err(UbootEnvError::BadValue { .. })
        ));
        assert!(matches!(
            serialize(&v, 5, Some(0)),
            Err(UbootEnvError::TooSmall { .. })
        ));
    }

    #[test]
    fn parses_fw_env_config() {
        let text = "\
# MTD device name\tDevice offset\tEnv. size\tFlash sector size\tNumber of sectors
/dev/mmcblk0  0x3fe000  0x4000
   # indented comment

/dev/mmcblk0\t0x400000\t4000 0x4000 1  # trailing comment
";
        let cfg = parse_config(text).unwrap();
        assert!(cfg.is_redundant());
        assert_eq!(cfg.env_size(), 0x4000);
        assert_eq!(
            cfg.devices[1],
            EnvDevice {
                device: "/dev/mmcblk0".into(),
                offset: 0x400000,
                env_size: 0x4000,
                sector_size: Some(0x4000),
                sectors: Some(1),
            }
        );
        let single = parse_config("/boot/uboot.env 0 0x20000\n").unwrap();
        assert!(!single.is_redundant());
        assert_eq!(single.devices[0].offset, 0);
        assert_eq!(single.devices[0].sector_size, None);
    }

    #[test]
    fn config_numbers_are_read_like_sscanf() {
        assert_eq!(parse_c_int("16384"), Some(16384));
        assert_eq!(parse_c_int("0x4000"), Some(0x4000));
        assert_eq!(parse_c_int("0X4000"), Some(0x4000));
        assert_eq!(parse_c_int("010"), Some(8));
        assert_eq!(parse_c_int("0"), Some(0));
        assert_eq!(parse_c_int("-0x20000"), Some(-0x20000));
        assert_eq!(parse_c_int("0x"), None);
        assert_eq!(parse_c_int("09"), None);
        assert_eq!(parse_c_int("12k"), None);
        assert_eq!(parse_hex("4000"), Some(0x4000));
        assert_eq!(parse_hex("0x4000"), Some(0x4000));
        assert_eq!(parse_hex("+4000"), None);
        assert_eq!(parse_hex("0xg"), None);
        // A size written in decimal is still hex to the tools, so it is hex here too.
        let cfg = parse_config("/f 0 16384\n").unwrap();
        assert_eq!(cfg.env_size(), 0x16384);
    }

    #[test]
    fn malformed_config_lines_are_refused_with_their_number() {
        let cases = [
            ("/dev/x 0\n", 1),
            ("# c\n/dev/x zero 0x4000\n", 2),
            ("/dev/x 0 0x4000\n/dev/y 0 size\n", 2),
            ("/dev/x 0 0x4000 0x4000 1 extra\n", 1),
            ("/dev/x 0 0x4000 sector\n", 1),
            ("/dev/x 0 0\n", 1),
            ("/dev/x 0 5\n", 1),
            ("/dev/x 0 0x4000\n\n/dev/y 0 0x2000\n", 3),
            ("/a 0 0x4000\n/b 0 0x4000\n/c 0 0x4000\n", 3),
            ("# only comments\n\n", 2),
            ("", 0),
        ];
        for (text, line) in cases {
            let err = parse_config(text).unwrap_err();
            assert!(
                matches!(err, UbootEnvError::Config { line: l, .. } if l == line),
                "{text:?}: {err}"
            );
            assert!(
                err.to_string()
                    .starts_with(&format!("fw_env.config line {line}:"))
            );
        }
    }
}
