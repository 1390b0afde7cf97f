//! Help for gear authors: what to change, per language, for each shape problem
//! `wasm verify` finds (see [`fluxrig_core::gear::problems`]), and `gear new`: a buildable
//! project per language from the kits of `sdk/`.
//!
//! Contract: [`advice`] names the fix for the problems an author's toolchain causes
//! (WASI imports, other imports, missing or mistyped exports, no memory export, too many
//! initial pages) in each language with a kit under `sdk/`: Rust, C, Zig, AssemblyScript.
//! Other problems (a module that does not validate) need no advice beyond their message.

use std::path::{Path, PathBuf};

use fluxrig_core::GearError;

use crate::error::{Error, Result};
use crate::files::write_atomic;

/// Returns the fix for `problem`, if it is one an author's build settings cause.
pub fn advice(problem: &GearError) -> Option<String> {
    let text = match problem {
        GearError::ForbiddenImport { import } if import.starts_with("wasi") => {
            "gears get no WASI: build for a freestanding target. Rust: --target \
             wasm32-unknown-unknown; C: zig cc -target wasm32-freestanding (or clang \
             --target=wasm32 -nostdlib); Zig: -target wasm32-freestanding; AssemblyScript: \
             no WASI shim"
                .to_string()
        }
        GearError::ForbiddenImport { import } if import.as_str() == "env.abort" => {
            "AssemblyScript's default abort handler is an import: build with --use abort= \
             (or your own abort function)"
                .to_string()
        }
        GearError::ForbiddenImport { .. } => "a gear may import only env.log (level i32, pointer i32, \
             length i32); remove the import or implement the function inside the module"
            .to_string(),
        GearError::WrongLogImportType => {
            "declare env.log as (i32 level, i32 pointer, i32 length) with no result".to_string()
        }
        GearError::MissingExport { export } => format!(
            "export {export}: Rust #[no_mangle] pub extern \"C\" fn {export}; C \
             __attribute__((export_name(\"{export}\"))); Zig `export fn {export}`, linked with \
             -rdynamic; AssemblyScript `export function {export}` in the entry file"
        ),
        GearError::WrongExportType { export, expected } => format!("{export} must be {expected}"),
        GearError::NoMemoryExport => "export the linear memory as \"memory\" (every toolchain's \
             default; do not build with --import-memory)"
            .to_string(),
        GearError::InitialMemoryTooLarge { limit, got } => format!(
            "the module starts with {got} pages, over the limit of {limit}; most of that is the \
             stack. Zig: --stack 65536; Rust: -C link-arg=-zstack-size=65536 (rustflags in \
             .cargo/config.toml); C: -Wl,-z,stack-size=65536; AssemblyScript: --initialMemory 1. \
             Or raise memory_limit_pages in the scenario (--memory-limit-pages here)"
        ),
        _ => return None,
    };
    Some(text)
}

/// One file of a gear project template: its path in the project, its text (with
/// `{{name}}` for the gear's name) and whether it is a script.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

// The templates and kit files of `sdk/`, embedded (about 80 KB): a project built by
// `gear new` is the one `sdk/check.sh` builds and runs with each real toolchain.
const RUST: &[TemplateFile] = &[
    TemplateFile {
        path: ".cargo/config.toml",
        text: include_str!("../sdk/rust/template/.cargo/config.toml"),
        executable: false,
    },
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../sdk/rust/template/.gitignore"),
        executable: false,
    },
    TemplateFile {
        path: "Cargo.lock",
        text: include_str!("../sdk/rust/template/Cargo.lock"),
        executable: false,
    },
    TemplateFile {
        path: "Cargo.toml",
        text: include_str!("../sdk/rust/template/Cargo.toml"),
        executable: false,
    },
    TemplateFile {
        path: "README.md",
        text: include_str!("../sdk/rust/template/README.md"),
        executable: false,
    },
    TemplateFile { path: "build.sh", text: include_str!("../sdk/rust/template/build.sh"), executable: true },
    TemplateFile {
        path: "input.jsonl",
        text: include_str!("../sdk/rust/template/input.jsonl"),
        executable: false,
    },
    TemplateFile {
        path: "src/lib.rs",
        text: include_str!("../sdk/rust/template/src/lib.rs"),
        executable: false,
    },
    TemplateFile {
        path: "fluxrig-gear/Cargo.toml",
        text: include_str!("../sdk/rust/fluxrig-gear/Cargo.toml"),
        executable: false,
    },
    TemplateFile {
        path: "fluxrig-gear/src/lib.rs",
        text: include_str!("../sdk/rust/fluxrig-gear/src/lib.rs"),
        executable: false,
    },
];

const C: &[TemplateFile] = &[
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../sdk/c/template/.gitignore"),
        executable: false,
    },
    TemplateFile { path: "Makefile", text: include_str!("../sdk/c/template/Makefile"), executable: false },
    TemplateFile { path: "README.md", text: include_str!("../sdk/c/template/README.md"), executable: false },
    TemplateFile { path: "gear.c", text: include_str!("../sdk/c/template/gear.c"), executable: false },
    TemplateFile {
        path: "input.jsonl",
        text: include_str!("../sdk/c/template/input.jsonl"),
        executable: false,
    },
    TemplateFile { path: "fluxrig_gear.h", text: include_str!("../sdk/c/fluxrig_gear.h"), executable: false },
];

const ZIG: &[TemplateFile] = &[
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../sdk/zig/template/.gitignore"),
        executable: false,
    },
    TemplateFile {
        path: "README.md",
        text: include_str!("../sdk/zig/template/README.md"),
        executable: false,
    },
    TemplateFile {
        path: "build.zig",
        text: include_str!("../sdk/zig/template/build.zig"),
        executable: false,
    },
    TemplateFile { path: "gear.zig", text: include_str!("../sdk/zig/template/gear.zig"), executable: false },
    TemplateFile {
        path: "input.jsonl",
        text: include_str!("../sdk/zig/template/input.jsonl"),
        executable: false,
    },
    TemplateFile { path: "fluxrig.zig", text: include_str!("../sdk/zig/fluxrig.zig"), executable: false },
];

const ASSEMBLYSCRIPT: &[TemplateFile] = &[
    TemplateFile {
        path: ".gitignore",
        text: include_str!("../sdk/assemblyscript/template/.gitignore"),
        executable: false,
    },
    TemplateFile {
        path: "README.md",
        text: include_str!("../sdk/assemblyscript/template/README.md"),
        executable: false,
    },
    TemplateFile {
        path: "asconfig.json",
        text: include_str!("../sdk/assemblyscript/template/asconfig.json"),
        executable: false,
    },
    TemplateFile {
        path: "assembly/index.ts",
        text: include_str!("../sdk/assemblyscript/template/assembly/index.ts"),
        executable: false,
    },
    TemplateFile {
        path: "input.jsonl",
        text: include_str!("../sdk/assemblyscript/template/input.jsonl"),
        executable: false,
    },
    TemplateFile {
        path: "package.json",
        text: include_str!("../sdk/assemblyscript/template/package.json"),
        executable: false,
    },
    TemplateFile {
        path: "assembly/fluxrig.ts",
        text: include_str!("../sdk/assemblyscript/assembly/fluxrig.ts"),
        executable: false,
    },
];

/// A language `gear new` writes a project for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust, `no_std`, for wasm32-unknown-unknown (cargo).
    Rust,
    /// C with `zig cc` or clang (a Makefile).
    C,
    /// Zig 0.14 (`build.zig`).
    Zig,
    /// AssemblyScript (npm, `asc`).
    AssemblyScript,
}

impl std::str::FromStr for Lang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rust" => Ok(Self::Rust),
            "c" => Ok(Self::C),
            "zig" => Ok(Self::Zig),
            "as" | "assemblyscript" => Ok(Self::AssemblyScript),
            _ => Err(format!("unknown language {s:?} (rust, c, zig or as)")),
        }
    }
}

impl Lang {
    fn files(self) -> &'static [TemplateFile] {
        match self {
            Self::Rust => RUST,
            Self::C => C,
            Self::Zig => ZIG,
            Self::AssemblyScript => ASSEMBLYSCRIPT,
        }
    }

    /// The command that builds a project of this language, run in its folder.
    pub fn build_command(self) -> &'static str {
        match self {
            Self::Rust => "./build.sh",
            Self::C => "make",
            Self::Zig => "zig build",
            Self::AssemblyScript => "npm install && npm run build",
        }
    }
}

/// Longest gear name `gear new` takes: 64 bytes (it names files, packages and the gear).
pub const MAX_GEAR_NAME_BYTES: usize = 64;

/// Checks a gear name for `gear new`: lowercase letters, digits, `-` and `_`, starting with
/// a letter, at most [`MAX_GEAR_NAME_BYTES`] (it names a Cargo package, an npm package,
/// files and the gear in a scenario).
pub fn check_gear_name(name: &str) -> Result<(), String> {
    let good = name.len() <= MAX_GEAR_NAME_BYTES
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if good {
        Ok(())
    } else {
        Err(format!(
            "gear name {name:?}: use lowercase letters, digits, '-' and '_', starting with a letter, \
             at most {MAX_GEAR_NAME_BYTES} bytes"
        ))
    }
}

/// Writes a new gear project for `lang` into `dir` (which must not exist or be empty);
/// returns the files written, in order.
pub fn write_project(dir: &Path, name: &str, lang: Lang) -> Result<Vec<PathBuf>> {
    check_gear_name(name).map_err(Error::Usage)?;
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(Error::invalid(format!(
            "{} exists and is not empty; choose another --dir",
            dir.display()
        )));
    }
    let mut written = Vec::new();
    for file in lang.files() {
        let path = dir.join(file.path);
        let text = file.text.replace("{{name}}", name);
        write_atomic(&path, text.as_bytes(), if file.executable { 0o755 } else { 0o644 })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use fluxrig_core::gear::{Detail, Name};

    use super::*;

    fn cut(text: &str) -> Name {
        Name::try_from(text).unwrap()
    }

    #[test]
    fn names_the_fix_for_each_language() {
        let wasi = GearError::ForbiddenImport { import: cut("wasi_snapshot_preview1.fd_write") };
        let text = advice(&wasi).unwrap();
        assert!(text.contains("wasm32-unknown-unknown") && text.contains("wasm32-freestanding"), "{text}");
        let memory = advice(&GearError::InitialMemoryTooLarge { limit: 16, got: 17 }).unwrap();
        for flag in ["--stack 65536", "-zstack-size=65536", "-Wl,-z,stack-size=65536", "--initialMemory 1"] {
            assert!(memory.contains(flag), "{memory}");
        }
        let missing = advice(&GearError::MissingExport { export: cut("free") }).unwrap();
        assert!(missing.contains("export_name(\"free\")") && missing.contains("export fn free"), "{missing}");
        assert!(advice(&GearError::NoMemoryExport).is_some());
        assert!(advice(&GearError::InvalidModule { detail: Detail::try_from("bad").unwrap() }).is_none());
    }
}
