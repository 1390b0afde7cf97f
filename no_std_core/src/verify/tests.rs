//! Tests of verify.rs: the shared signature vectors byte for byte, every refusal, key files.
use super::*;
use alloc::format;

fn v(name: &str) -> Vec<u8> {
    fluxrig_testkit::vectors::get("signatures.txt", name)
}

fn keys() -> (SigningKey, SigningKey) {
    (
        SigningKey::from_key_file(&v("vendor_key_file")).unwrap(),
        SigningKey::from_key_file(&v("cluster_key_file")).unwrap(),
    )
}

#[test]
fn bare_module_vectors_byte_for_byte() {
    let (vendor, cluster) = keys();
    assert_eq!(vendor.public_key().0.to_vec(), v("vendor_pub"));
    assert_eq!(cluster.public_key().0.to_vec(), v("cluster_pub"));
    assert_eq!(sha256(&v("module")).to_vec(), v("module_sha256"));
    let signed = vendor_sign(&v("module"), &vendor).unwrap();
    assert_eq!(signed, v("vendor_signed_module"));
    assert_eq!(&signed[signed.len() - 64..], &v("vendor_signature")[..]);
    let (hash, stored) = countersign(&signed, &cluster).unwrap();
    assert_eq!(hash.0.to_vec(), v("catalog_hash"));
    assert_eq!(stored, v("cluster_signed_module"));
    assert_eq!(&stored[stored.len() - 64..], &v("cluster_signature")[..]);
    assert_eq!(sha256(&stored).to_vec(), v("cluster_signed_module_sha256"));
    let verified = verify_cluster(&stored, &cluster.public_key(), Some(&hash)).unwrap();
    assert_eq!(verified.hash(), hash);
    assert_eq!(verified.trust(), Trust::ClusterSigned);
    assert_eq!(format!("{hash}"), "b3a9f5ae175c79848ec1601eb99224107e035ab3e242ef9bced028b448c1645d");
    assert_eq!(CatalogHash::from_hex(&format!("{hash}")), Some(hash));
}

#[test]
fn gear_module_vectors_byte_for_byte() {
    let (vendor, cluster) = keys();
    let signed = vendor_sign(&v("gear_module"), &vendor).unwrap();
    assert_eq!(signed, v("gear_vendor_signed_module"));
    let (hash, stored) = countersign(&signed, &cluster).unwrap();
    assert_eq!(hash.0.to_vec(), v("gear_catalog_hash"));
    assert_eq!(stored, v("gear_cluster_signed_module"));
}

#[test]
fn resigning_replaces_the_old_signature() {
    let (vendor, cluster) = keys();
    let once = vendor_sign(&v("module"), &cluster).unwrap();
    let twice = vendor_sign(&once, &vendor).unwrap();
    assert_eq!(twice, v("vendor_signed_module"));
}

#[test]
fn vendor_check_says_which_key_matched_and_keeps_fluxrig_strings() {
    let (vendor, cluster) = keys();
    let signed = v("vendor_signed_module");
    let trusted = [cluster.public_key(), vendor.public_key()];
    assert_eq!(verify_vendor(&signed, &trusted), Ok(1));
    // A cluster-signed module still carries a checkable vendor signature.
    assert_eq!(verify_vendor(&v("cluster_signed_module"), &trusted), Ok(1));
    let e = verify_vendor(&signed, &[cluster.public_key()]).unwrap_err();
    assert_eq!(format!("{e}"), "vendor signature found but does not match any trusted keys");
    let e = verify_vendor(&v("module"), &trusted).unwrap_err();
    assert_eq!(format!("{e}"), "missing vendor signature (use allow_unsigned to bypass)");
    let mut tampered = signed.clone();
    tampered[4] ^= 1;
    assert_eq!(verify_vendor(&tampered, &trusted), Err(VerifyError::Section(SectionError::BadHeader)));
    let mut tampered = signed;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(verify_vendor(&tampered, &trusted), Err(VerifyError::UntrustedVendor));
}

#[test]
fn cluster_check_refuses_missing_wrong_tampered_and_misnamed() {
    let (vendor, cluster) = keys();
    let stored = v("cluster_signed_module");
    let key = cluster.public_key();
    assert_eq!(
        verify_cluster(&v("vendor_signed_module"), &key, None).unwrap_err(),
        VerifyError::MissingClusterSignature
    );
    assert_eq!(
        verify_cluster(&stored, &vendor.public_key(), None).unwrap_err(),
        VerifyError::BadClusterSignature
    );
    let mut tampered = stored.clone();
    tampered[30] ^= 0x40; // inside the vendor signature payload
    assert_eq!(verify_cluster(&tampered, &key, None).unwrap_err(), VerifyError::BadClusterSignature);
    let other = CatalogHash([0xab; 32]);
    let e = verify_cluster(&stored, &key, Some(&other)).unwrap_err();
    assert!(matches!(e, VerifyError::HashMismatch { .. }));
    assert!(format!("{e}").contains("but it is named abab"));
    let doubled = section::append_custom(&stored, CLUSTER_SECTION, &[0; 64]).unwrap();
    assert_eq!(
        verify_cluster(&doubled, &key, None).unwrap_err(),
        VerifyError::DuplicateSignature { section: CLUSTER_SECTION }
    );
    let short = section::append_custom(&v("vendor_signed_module"), CLUSTER_SECTION, &[0; 63]).unwrap();
    assert_eq!(
        verify_cluster(&short, &key, None).unwrap_err(),
        VerifyError::BadSignatureLength { section: CLUSTER_SECTION, got: 63 }
    );
    assert_eq!(countersign(&stored, &cluster).unwrap_err(), VerifyError::AlreadyCountersigned);
    assert_eq!(vendor_sign(&stored, &vendor).unwrap_err(), VerifyError::AlreadyCountersigned);
}

#[test]
fn unverified_modules_are_marked() {
    let m = dangerous::trust_unverified([1u8, 2, 3]);
    assert_eq!(m.trust(), Trust::Unverified);
    let stored = v("cluster_signed_module");
    assert_eq!(dangerous::trust_unverified(&stored).hash().0.to_vec(), v("catalog_hash"));
}

#[test]
fn key_files_in_every_accepted_form() {
    let file = v("vendor_key_file");
    let from_seed = SigningKey::from_key_file(&file[..32]).unwrap();
    assert_eq!(from_seed.to_key_file().to_vec(), file);
    let hex: alloc::string::String = file.iter().map(|b| format!("{b:02X}")).collect();
    let from_hex = SigningKey::from_key_file(format!("  {hex}\n").as_bytes()).unwrap();
    assert_eq!(from_hex.public_key(), from_seed.public_key());
    assert_eq!(SigningKey::from_key_file(&file[..31]).unwrap_err(), KeyError::BadLength { got: 31 });
    assert_eq!(SigningKey::from_key_file(&[0; 32]).unwrap_err(), KeyError::ZeroSeed);
    let mut wrong = file.clone();
    wrong[40] ^= 1;
    assert_eq!(SigningKey::from_key_file(&wrong).unwrap_err(), KeyError::PublicHalfMismatch);
    let mut bad_hex = hex.into_bytes();
    bad_hex[5] = b'g';
    assert_eq!(SigningKey::from_key_file(&bad_hex).unwrap_err(), KeyError::BadLength { got: 128 });
    assert_eq!(PublicKey::from_bytes(&[0; 33]).unwrap_err(), KeyError::BadPublicKeyLength { got: 33 });
    assert!(!format!("{from_seed:?}").contains("9d61b1"));
}
