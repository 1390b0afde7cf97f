//! Help for gear authors: what to change, per language, for each shape problem
//! `wasm verify` finds (see [`fluxrig_core::gear::problems`]).
//!
//! Contract: [`advice`] names the fix for the problems an author's toolchain causes
//! (WASI imports, other imports, missing or mistyped exports, no memory export, too many
//! initial pages) in each language with a kit under `sdk/`: Rust, C, Zig, AssemblyScript.
//! Other problems (a module that does not validate) need no advice beyond their message.

use fluxrig_core::GearError;

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
