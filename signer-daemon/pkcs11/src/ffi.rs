//! The C ABI: `C_GetFunctionList` and the functions of the list. This is
//! the only module of the workspace with `unsafe` code: every block reads or
//! writes memory the caller handed over, as the PKCS#11 specification
//! defines it, and says why that is sound in a `SAFETY:` comment. All logic
//! is in the safe modules ([`crate::module`] and below).
//!
//! Every function runs its body under [`std::panic::catch_unwind`]: a panic
//! becomes `CKR_GENERAL_ERROR` and never unwinds into C.

#![allow(non_snake_case)]

use std::ffi::c_void;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use cryptoki_sys::*;

use crate::error::{P11Error, rv_name};
use crate::mechanism::Step;
use crate::module::{self, Config, MANUFACTURER, Module, padded};
use crate::objects::Attr;

/// The module between `C_Initialize` and `C_Finalize`.
static STATE: Mutex<Option<Arc<Module>>> = Mutex::new(None);

fn state() -> std::sync::MutexGuard<'static, Option<Arc<Module>>> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The initialized module of this process (not a forked parent's).
fn module() -> Result<Arc<Module>, P11Error> {
    match &*state() {
        Some(m) if !m.is_forked() => Ok(m.clone()),
        _ => Err(P11Error::NotInitialized),
    }
}

/// Run a function body: errors become their `CKR_*` (logged with the
/// daemon's message), panics become `CKR_GENERAL_ERROR`.
fn entry(name: &str, body: impl FnOnce() -> Result<(), P11Error>) -> CK_RV {
    let result = std::panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(P11Error::Panic(what))
    });
    match result {
        Ok(()) => CKR_OK,
        Err(e) => {
            let rv = e.rv();
            if e.worth_logging() {
                let config = module().map_or_else(|_| Config::from_env(), |m| m.config);
                module::log(&config, format_args!("{name}: {e} ({})", rv_name(rv)));
            }
            rv
        }
    }
}

/// `n` elements at `p` as a slice (empty when `n` is 0).
///
/// # Safety
/// `p` must be null or valid for reads of `n` elements for `'a`.
unsafe fn slice<'a, T>(p: *const T, n: CK_ULONG) -> Result<&'a [T], P11Error> {
    let n = usize::try_from(n).map_err(|_| P11Error::ArgumentsBad("length"))?;
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(P11Error::ArgumentsBad("null buffer with a length"));
    }
    // SAFETY: p is not null and, by this function's contract, valid for n
    // reads of T for 'a.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Store `v` at `p`.
///
/// # Safety
/// `p` must be null or valid for a write of `T`.
unsafe fn put<T>(p: *mut T, v: T) -> Result<(), P11Error> {
    if p.is_null() {
        return Err(P11Error::ArgumentsBad("null output pointer"));
    }
    // SAFETY: p is not null and, by this function's contract, valid for a
    // write of T (write does not drop the old value, which for the plain C
    // types used here has no destructor).
    unsafe { p.write(v) };
    Ok(())
}

/// The PKCS#11 "list" convention: `out` null asks for the count (written to
/// `count`); else `*count` is the capacity, the items are written if they
/// fit (`CKR_BUFFER_TOO_SMALL` if not), and `*count` becomes the number.
///
/// # Safety
/// `count` must be null or valid for reads and writes; `out` null or valid
/// for `*count` writes.
unsafe fn put_list<T: Copy>(
    out: *mut T,
    count: *mut CK_ULONG,
    items: &[T],
) -> Result<(), P11Error> {
    if count.is_null() {
        return Err(P11Error::ArgumentsBad("null count pointer"));
    }
    let n = items.len() as CK_ULONG;
    if out.is_null() {
        // SAFETY: count is not null and valid for writes (contract).
        unsafe { count.write(n) };
        return Ok(());
    }
    // SAFETY: count is not null and valid for reads (contract).
    let capacity = unsafe { count.read() };
    // SAFETY: count is valid for writes (contract).
    unsafe { count.write(n) };
    if capacity < n {
        return Err(P11Error::BufferTooSmall {
            needed: items.len(),
        });
    }
    // SAFETY: out is valid for `capacity` >= items.len() writes of T
    // (contract), and items is a distinct Rust slice (no overlap).
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), out, items.len()) };
    Ok(())
}

/// Deliver a signing step: a length, a too-small buffer, or the signature.
///
/// # Safety
/// `len` must be null or valid for writes; `out`, when the step is a
/// signature, valid for the capacity the caller gave.
unsafe fn put_signature(step: Step, out: *mut CK_BYTE, len: *mut CK_ULONG) -> Result<(), P11Error> {
    match step {
        Step::Length(n) => {
            // SAFETY: len is null or valid for writes (contract).
            unsafe { put(len, n as CK_ULONG) }
        }
        Step::TooSmall(n) => {
            // SAFETY: as above.
            unsafe { put(len, n as CK_ULONG) }?;
            Err(P11Error::BufferTooSmall { needed: n })
        }
        Step::Signature(sig) => {
            // SAFETY: the capacity was read from *len and checked against
            // sig.len() by the operation; out is valid for that many writes
            // (contract) and does not overlap sig.
            unsafe { std::ptr::copy_nonoverlapping(sig.as_ptr(), out, sig.len()) };
            // SAFETY: len is valid for writes (contract).
            unsafe { put(len, sig.len() as CK_ULONG) }
        }
    }
}

/// The capacity of a signature buffer: `None` for a length query.
///
/// # Safety
/// `len` must be null or valid for reads.
unsafe fn capacity(out: *const CK_BYTE, len: *const CK_ULONG) -> Result<Option<usize>, P11Error> {
    if len.is_null() {
        return Err(P11Error::ArgumentsBad("null signature length pointer"));
    }
    if out.is_null() {
        return Ok(None);
    }
    // SAFETY: len is not null and valid for reads (contract).
    let n = unsafe { len.read() };
    Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)))
}

fn version(major: u8, minor: u8) -> CK_VERSION {
    CK_VERSION { major, minor }
}

/// `C_GetFunctionList`: the module's entry point.
///
/// # Safety
/// `ppFunctionList` must be null or valid for a write of a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(ppFunctionList: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    entry("C_GetFunctionList", || {
        // The list is immutable; callers take a mutable pointer by the C
        // API's signature but never write through it.
        let list = std::ptr::addr_of!(FUNCTION_LIST) as *mut CK_FUNCTION_LIST;
        // SAFETY: ppFunctionList is null or valid for a write (contract).
        unsafe { put(ppFunctionList, list) }
    })
}

unsafe extern "C" fn C_Initialize(pInitArgs: *mut c_void) -> CK_RV {
    entry("C_Initialize", || {
        if !pInitArgs.is_null() {
            // SAFETY: a non-null argument points to a CK_C_INITIALIZE_ARGS
            // (PKCS#11 2.40 §5.4, C_Initialize).
            let args = unsafe { &*(pInitArgs as *const CK_C_INITIALIZE_ARGS) };
            if !args.pReserved.is_null() {
                return Err(P11Error::ArgumentsBad("pReserved must be null"));
            }
            let given = [
                args.CreateMutex.is_some(),
                args.DestroyMutex.is_some(),
                args.LockMutex.is_some(),
                args.UnlockMutex.is_some(),
            ];
            if given.iter().any(|g| *g) && !given.iter().all(|g| *g) {
                return Err(P11Error::ArgumentsBad("all four mutex functions or none"));
            }
            if args.flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS != 0 {
                return Err(P11Error::NeedToCreateThreads);
            }
            if given[0] && args.flags & CKF_OS_LOCKING_OK == 0 {
                return Err(P11Error::CantLock);
            }
        }
        let mut state = state();
        if let Some(old) = state.take() {
            if old.is_forked() {
                // A forked child: the parent's client thread does not
                // exist here. Forget (never join) it, start afresh.
                std::mem::forget(old);
            } else {
                *state = Some(old);
                return Err(P11Error::AlreadyInitialized);
            }
        }
        let config = Config::from_env();
        let client = signer_client::blocking::BlockingClient::spawn(
            signer_client::default_socket(),
            signer_client::DEFAULT_TIMEOUT,
        )
        .map_err(P11Error::Thread)?;
        *state = Some(Arc::new(Module::new(Box::new(client), config)));
        Ok(())
    })
}

unsafe extern "C" fn C_Finalize(pReserved: *mut c_void) -> CK_RV {
    entry("C_Finalize", || {
        if !pReserved.is_null() {
            return Err(P11Error::ArgumentsBad("pReserved must be null"));
        }
        let old = state().take();
        match old {
            Some(m) if m.is_forked() => {
                std::mem::forget(m);
                Err(P11Error::NotInitialized)
            }
            // Dropped when the last call in flight on another thread ends.
            Some(m) => {
                drop(m);
                Ok(())
            }
            None => Err(P11Error::NotInitialized),
        }
    })
}

unsafe extern "C" fn C_GetInfo(pInfo: *mut CK_INFO) -> CK_RV {
    entry("C_GetInfo", || {
        module()?;
        let info = CK_INFO {
            cryptokiVersion: version(2, 40),
            manufacturerID: padded(MANUFACTURER),
            flags: 0,
            libraryDescription: padded("signer-daemon PKCS#11 client"),
            libraryVersion: version(
                env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0),
                env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0),
            ),
        };
        // SAFETY: pInfo is null or points to a CK_INFO (PKCS#11 C_GetInfo).
        unsafe { put(pInfo, info) }
    })
}

unsafe extern "C" fn C_GetSlotList(
    tokenPresent: CK_BBOOL,
    pSlotList: *mut CK_SLOT_ID,
    pulCount: *mut CK_ULONG,
) -> CK_RV {
    entry("C_GetSlotList", || {
        let m = module()?;
        let slots = m.slot_list(tokenPresent != CK_FALSE, pSlotList.is_null());
        // SAFETY: pulCount is null or valid for reads and writes, pSlotList
        // null or valid for *pulCount slot ids (PKCS#11 C_GetSlotList).
        unsafe { put_list(pSlotList, pulCount, &slots) }
    })
}

unsafe extern "C" fn C_GetSlotInfo(slotID: CK_SLOT_ID, pInfo: *mut CK_SLOT_INFO) -> CK_RV {
    entry("C_GetSlotInfo", || {
        let s = module()?.slot_info(slotID)?;
        let info = CK_SLOT_INFO {
            slotDescription: padded(&s.description),
            manufacturerID: padded(MANUFACTURER),
            flags: s.flags,
            hardwareVersion: version(s.firmware.0, s.firmware.1),
            firmwareVersion: version(s.firmware.0, s.firmware.1),
        };
        // SAFETY: pInfo is null or points to a CK_SLOT_INFO.
        unsafe { put(pInfo, info) }
    })
}

unsafe extern "C" fn C_GetTokenInfo(slotID: CK_SLOT_ID, pInfo: *mut CK_TOKEN_INFO) -> CK_RV {
    entry("C_GetTokenInfo", || {
        let t = module()?.token_info(slotID)?;
        let info = CK_TOKEN_INFO {
            label: padded(&t.label),
            manufacturerID: padded(MANUFACTURER),
            model: padded(&t.model),
            serialNumber: padded(&t.serial),
            flags: t.flags,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: t.sessions,
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: t.rw_sessions,
            // The PIN is the daemon's; C_Login ignores what it is given.
            ulMaxPinLen: 64,
            ulMinPinLen: 0,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: version(t.firmware.0, t.firmware.1),
            firmwareVersion: version(t.firmware.0, t.firmware.1),
            utcTime: [b' '; 16],
        };
        // SAFETY: pInfo is null or points to a CK_TOKEN_INFO.
        unsafe { put(pInfo, info) }
    })
}

unsafe extern "C" fn C_GetMechanismList(
    slotID: CK_SLOT_ID,
    pMechanismList: *mut CK_MECHANISM_TYPE,
    pulCount: *mut CK_ULONG,
) -> CK_RV {
    entry("C_GetMechanismList", || {
        let list = module()?.mechanisms(slotID)?;
        // SAFETY: pulCount null or valid for reads and writes,
        // pMechanismList null or valid for *pulCount elements.
        unsafe { put_list(pMechanismList, pulCount, list) }
    })
}

unsafe extern "C" fn C_GetMechanismInfo(
    slotID: CK_SLOT_ID,
    type_: CK_MECHANISM_TYPE,
    pInfo: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    entry("C_GetMechanismInfo", || {
        let (min, max, flags) = module()?.mechanism_info(slotID, type_)?;
        let info = CK_MECHANISM_INFO {
            ulMinKeySize: min,
            ulMaxKeySize: max,
            flags,
        };
        // SAFETY: pInfo is null or points to a CK_MECHANISM_INFO.
        unsafe { put(pInfo, info) }
    })
}

unsafe extern "C" fn C_OpenSession(
    slotID: CK_SLOT_ID,
    flags: CK_FLAGS,
    _pApplication: *mut c_void,
    _Notify: CK_NOTIFY,
    phSession: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    entry("C_OpenSession", || {
        if phSession.is_null() {
            return Err(P11Error::ArgumentsBad("null session pointer"));
        }
        let h = module()?.open_session(slotID, flags)?;
        // SAFETY: phSession is not null and points to a handle.
        unsafe { put(phSession, h) }
    })
}

unsafe extern "C" fn C_CloseSession(hSession: CK_SESSION_HANDLE) -> CK_RV {
    entry("C_CloseSession", || module()?.close_session(hSession))
}

unsafe extern "C" fn C_CloseAllSessions(slotID: CK_SLOT_ID) -> CK_RV {
    entry("C_CloseAllSessions", || {
        module()?.close_all_sessions(slotID)
    })
}

unsafe extern "C" fn C_GetSessionInfo(
    hSession: CK_SESSION_HANDLE,
    pInfo: *mut CK_SESSION_INFO,
) -> CK_RV {
    entry("C_GetSessionInfo", || {
        let (slotID, state, flags) = module()?.session_info(hSession)?;
        let info = CK_SESSION_INFO {
            slotID,
            state,
            flags,
            ulDeviceError: 0,
        };
        // SAFETY: pInfo is null or points to a CK_SESSION_INFO.
        unsafe { put(pInfo, info) }
    })
}

/// The PIN is not read at all: the daemon holds the card's PIN.
unsafe extern "C" fn C_Login(
    hSession: CK_SESSION_HANDLE,
    userType: CK_USER_TYPE,
    _pPin: *mut CK_UTF8CHAR,
    _ulPinLen: CK_ULONG,
) -> CK_RV {
    entry("C_Login", || module()?.login(hSession, userType))
}

unsafe extern "C" fn C_Logout(hSession: CK_SESSION_HANDLE) -> CK_RV {
    entry("C_Logout", || module()?.logout(hSession))
}

/// Read a template's (type, value) pairs.
///
/// # Safety
/// `p` must be null or valid for `n` attributes, each value null or valid
/// for its length.
unsafe fn template(
    p: *const CK_ATTRIBUTE,
    n: CK_ULONG,
) -> Result<Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>, P11Error> {
    // SAFETY: p is null or valid for n attributes (contract).
    let attrs = unsafe { slice(p, n) }?;
    attrs
        .iter()
        .map(|a| {
            // SAFETY: each value is null or valid for ulValueLen bytes
            // (contract).
            let v = unsafe { slice(a.pValue as *const u8, a.ulValueLen) }?;
            Ok((a.type_, v.to_vec()))
        })
        .collect()
}

unsafe extern "C" fn C_GetAttributeValue(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
) -> CK_RV {
    entry("C_GetAttributeValue", || {
        let n = usize::try_from(ulCount).map_err(|_| P11Error::ArgumentsBad("count"))?;
        if n > 0 && pTemplate.is_null() {
            return Err(P11Error::ArgumentsBad("null template"));
        }
        let types: Vec<CK_ATTRIBUTE_TYPE> = (0..n)
            // SAFETY: pTemplate is valid for ulCount attributes (PKCS#11
            // C_GetAttributeValue) and i < ulCount.
            .map(|i| unsafe { (*pTemplate.add(i)).type_ })
            .collect();
        let values = module()?.attributes(hSession, hObject, &types)?;
        let mut result = Ok(());
        for (i, value) in values.into_iter().enumerate() {
            // SAFETY: as above; the caller owns the template for the call and
            // no other reference to it exists in this function.
            let a = unsafe { &mut *pTemplate.add(i) };
            match value {
                Attr::Value(v) => {
                    if a.pValue.is_null() {
                        a.ulValueLen = v.len() as CK_ULONG;
                    } else if (a.ulValueLen as usize) < v.len() {
                        a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        result = Err(P11Error::BufferTooSmall { needed: v.len() });
                    } else {
                        // SAFETY: pValue is valid for ulValueLen >= v.len()
                        // bytes (contract) and does not overlap v.
                        unsafe {
                            std::ptr::copy_nonoverlapping(v.as_ptr(), a.pValue as *mut u8, v.len())
                        };
                        a.ulValueLen = v.len() as CK_ULONG;
                    }
                }
                Attr::Sensitive => {
                    a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    result = Err(P11Error::AttributeSensitive);
                }
                Attr::Invalid => {
                    a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    result = Err(P11Error::AttributeTypeInvalid);
                }
            }
        }
        result
    })
}

unsafe extern "C" fn C_FindObjectsInit(
    hSession: CK_SESSION_HANDLE,
    pTemplate: *mut CK_ATTRIBUTE,
    ulCount: CK_ULONG,
) -> CK_RV {
    entry("C_FindObjectsInit", || {
        // SAFETY: pTemplate is null or valid for ulCount attributes with
        // valid values (PKCS#11 C_FindObjectsInit).
        let t = unsafe { template(pTemplate, ulCount) }?;
        module()?.find_init(hSession, &t)
    })
}

unsafe extern "C" fn C_FindObjects(
    hSession: CK_SESSION_HANDLE,
    phObject: *mut CK_OBJECT_HANDLE,
    ulMaxObjectCount: CK_ULONG,
    pulObjectCount: *mut CK_ULONG,
) -> CK_RV {
    entry("C_FindObjects", || {
        if phObject.is_null() && ulMaxObjectCount > 0 {
            return Err(P11Error::ArgumentsBad("null object buffer"));
        }
        if pulObjectCount.is_null() {
            return Err(P11Error::ArgumentsBad("null count pointer"));
        }
        let max = usize::try_from(ulMaxObjectCount).unwrap_or(usize::MAX);
        let found = module()?.find(hSession, max)?;
        if !found.is_empty() {
            // SAFETY: phObject is valid for ulMaxObjectCount >= found.len()
            // handles (PKCS#11 C_FindObjects) and does not overlap found.
            unsafe { std::ptr::copy_nonoverlapping(found.as_ptr(), phObject, found.len()) };
        }
        // SAFETY: pulObjectCount is not null and points to a CK_ULONG.
        unsafe { put(pulObjectCount, found.len() as CK_ULONG) }
    })
}

unsafe extern "C" fn C_FindObjectsFinal(hSession: CK_SESSION_HANDLE) -> CK_RV {
    entry("C_FindObjectsFinal", || module()?.find_final(hSession))
}

unsafe extern "C" fn C_SignInit(
    hSession: CK_SESSION_HANDLE,
    pMechanism: *mut CK_MECHANISM,
    hKey: CK_OBJECT_HANDLE,
) -> CK_RV {
    entry("C_SignInit", || {
        if pMechanism.is_null() {
            return Err(P11Error::ArgumentsBad("null mechanism"));
        }
        // SAFETY: pMechanism is not null and points to a CK_MECHANISM
        // (PKCS#11 C_SignInit); only its plain fields are read.
        let (ckm, p_param, param_len) = unsafe {
            (
                (*pMechanism).mechanism,
                (*pMechanism).pParameter,
                (*pMechanism).ulParameterLen,
            )
        };
        let param_len = usize::try_from(param_len).unwrap_or(usize::MAX);
        let is_pss = matches!(
            ckm,
            CKM_RSA_PKCS_PSS
                | CKM_SHA256_RSA_PKCS_PSS
                | CKM_SHA384_RSA_PKCS_PSS
                | CKM_SHA512_RSA_PKCS_PSS
        );
        let param = if param_len == 0 {
            crate::mechanism::Param::None
        } else if is_pss
            && !p_param.is_null()
            && param_len == std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>()
        {
            // SAFETY: for the PSS mechanisms PKCS#11 defines pParameter as
            // a CK_RSA_PKCS_PSS_PARAMS, it is not null and the caller says
            // it is exactly that size; it is copied (read_unaligned: the
            // caller's buffer need not be aligned), never kept.
            let p = unsafe { std::ptr::read_unaligned(p_param as *const CK_RSA_PKCS_PSS_PARAMS) };
            crate::mechanism::Param::Pss {
                hash: p.hashAlg,
                mgf: p.mgf,
                salt: p.sLen,
            }
        } else {
            crate::mechanism::Param::Other(param_len)
        };
        module()?.sign_init_param(hSession, ckm, &param, hKey)
    })
}

unsafe extern "C" fn C_Sign(
    hSession: CK_SESSION_HANDLE,
    pData: *mut CK_BYTE,
    ulDataLen: CK_ULONG,
    pSignature: *mut CK_BYTE,
    pulSignatureLen: *mut CK_ULONG,
) -> CK_RV {
    entry("C_Sign", || {
        // SAFETY: pData is null or valid for ulDataLen bytes (PKCS#11 C_Sign).
        let data = unsafe { slice(pData as *const u8, ulDataLen) }?;
        // SAFETY: pulSignatureLen is null or valid for reads.
        let cap = unsafe { capacity(pSignature, pulSignatureLen) }?;
        let step = module()?.sign(hSession, data, cap)?;
        // SAFETY: pulSignatureLen is valid for writes, pSignature for the
        // capacity read from it (PKCS#11 C_Sign).
        unsafe { put_signature(step, pSignature, pulSignatureLen) }
    })
}

unsafe extern "C" fn C_SignUpdate(
    hSession: CK_SESSION_HANDLE,
    pPart: *mut CK_BYTE,
    ulPartLen: CK_ULONG,
) -> CK_RV {
    entry("C_SignUpdate", || {
        // SAFETY: pPart is null or valid for ulPartLen bytes.
        let part = unsafe { slice(pPart as *const u8, ulPartLen) }?;
        module()?.sign_update(hSession, part)
    })
}

unsafe extern "C" fn C_SignFinal(
    hSession: CK_SESSION_HANDLE,
    pSignature: *mut CK_BYTE,
    pulSignatureLen: *mut CK_ULONG,
) -> CK_RV {
    entry("C_SignFinal", || {
        // SAFETY: pulSignatureLen is null or valid for reads.
        let cap = unsafe { capacity(pSignature, pulSignatureLen) }?;
        let step = module()?.sign_final(hSession, cap)?;
        // SAFETY: as in C_Sign.
        unsafe { put_signature(step, pSignature, pulSignatureLen) }
    })
}

/// Functions the module does not implement: they take no pointer.
macro_rules! unsupported {
    ($(fn $name:ident($($t:ty),*) => $rv:expr;)*) => {
        $(
            extern "C" fn $name($(_: $t),*) -> CK_RV {
                $rv
            }
        )*
    };
}

unsupported! {
    fn C_InitToken(CK_SLOT_ID, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_InitPIN(CK_SESSION_HANDLE, *mut CK_UTF8CHAR, CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_SetPIN(CK_SESSION_HANDLE, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR, CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_GetOperationState(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_SetOperationState(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_CreateObject(CK_SESSION_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_CopyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DestroyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_GetObjectSize(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_SetAttributeValue(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_EncryptInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_Encrypt(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_EncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_EncryptFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DecryptInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_Decrypt(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DecryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DecryptFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DigestInit(CK_SESSION_HANDLE, *mut CK_MECHANISM) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_Digest(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DigestUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DigestKey(CK_SESSION_HANDLE, CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DigestFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_SignRecoverInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_SignRecover(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_VerifyInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_Verify(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_VerifyUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_VerifyFinal(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_VerifyRecoverInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_VerifyRecover(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DigestEncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DecryptDigestUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_SignEncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DecryptVerifyUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_GenerateKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_GenerateKeyPair(CK_SESSION_HANDLE, *mut CK_MECHANISM, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE, *mut CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_WrapKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE, *mut CK_BYTE, *mut CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_UnwrapKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_DeriveKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_SeedRandom(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_GenerateRandom(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG) => CKR_FUNCTION_NOT_SUPPORTED;
    fn C_GetFunctionStatus(CK_SESSION_HANDLE) => CKR_FUNCTION_NOT_PARALLEL;
    fn C_CancelFunction(CK_SESSION_HANDLE) => CKR_FUNCTION_NOT_PARALLEL;
    fn C_WaitForSlotEvent(CK_FLAGS, *mut CK_SLOT_ID, *mut c_void) => CKR_FUNCTION_NOT_SUPPORTED;
}

/// The function list `C_GetFunctionList` hands out (PKCS#11 2.40).
static FUNCTION_LIST: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: CK_VERSION {
        major: 2,
        minor: 40,
    },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(C_InitToken),
    C_InitPIN: Some(C_InitPIN),
    C_SetPIN: Some(C_SetPIN),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(C_GetOperationState),
    C_SetOperationState: Some(C_SetOperationState),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(C_CreateObject),
    C_CopyObject: Some(C_CopyObject),
    C_DestroyObject: Some(C_DestroyObject),
    C_GetObjectSize: Some(C_GetObjectSize),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(C_SetAttributeValue),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(C_EncryptInit),
    C_Encrypt: Some(C_Encrypt),
    C_EncryptUpdate: Some(C_EncryptUpdate),
    C_EncryptFinal: Some(C_EncryptFinal),
    C_DecryptInit: Some(C_DecryptInit),
    C_Decrypt: Some(C_Decrypt),
    C_DecryptUpdate: Some(C_DecryptUpdate),
    C_DecryptFinal: Some(C_DecryptFinal),
    C_DigestInit: Some(C_DigestInit),
    C_Digest: Some(C_Digest),
    C_DigestUpdate: Some(C_DigestUpdate),
    C_DigestKey: Some(C_DigestKey),
    C_DigestFinal: Some(C_DigestFinal),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(C_SignUpdate),
    C_SignFinal: Some(C_SignFinal),
    C_SignRecoverInit: Some(C_SignRecoverInit),
    C_SignRecover: Some(C_SignRecover),
    C_VerifyInit: Some(C_VerifyInit),
    C_Verify: Some(C_Verify),
    C_VerifyUpdate: Some(C_VerifyUpdate),
    C_VerifyFinal: Some(C_VerifyFinal),
    C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
    C_VerifyRecover: Some(C_VerifyRecover),
    C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
    C_GenerateKey: Some(C_GenerateKey),
    C_GenerateKeyPair: Some(C_GenerateKeyPair),
    C_WrapKey: Some(C_WrapKey),
    C_UnwrapKey: Some(C_UnwrapKey),
    C_DeriveKey: Some(C_DeriveKey),
    C_SeedRandom: Some(C_SeedRandom),
    C_GenerateRandom: Some(C_GenerateRandom),
    C_GetFunctionStatus: Some(C_GetFunctionStatus),
    C_CancelFunction: Some(C_CancelFunction),
    C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
};

#[cfg(test)]
mod tests {
    //! The C ABI itself, with a fake daemon behind the module. One test:
    //! the module's state is process-wide.

    use super::*;
    use std::ptr::null_mut;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use signer_client::SignEvent;
    use signer_proto::v1 as pb;

    use crate::module::Daemon;
    use crate::objects::KeyEntry;

    static SIGNS: AtomicUsize = AtomicUsize::new(0);

    struct Fake;

    impl Daemon for Fake {
        fn list_tokens(&self) -> Result<Vec<pb::Token>, signer_client::Error> {
            Ok(vec![pb::Token {
                serial: 42,
                firmware: "5.7.4".into(),
                available: true,
                ..Default::default()
            }])
        }
        fn list_keys(&self, serial: u32) -> Result<Vec<pb::Key>, signer_client::Error> {
            use p256::pkcs8::EncodePublicKey;
            let sk = p256::ecdsa::SigningKey::from_slice(&[5u8; 32]).expect("key");
            let spki = sk.verifying_key().to_public_key_der().expect("spki");
            Ok(vec![pb::Key {
                token_serial: serial,
                slot: "9c".into(),
                algorithm: pb::Algorithm::EccP256 as i32,
                key_id: "k".into(),
                public_key_der: spki.as_bytes().to_vec(),
                ..Default::default()
            }])
        }
        fn sign(
            &self,
            _: &KeyEntry,
            _: pb::HashAlgorithm,
            digest: Vec<u8>,
            _: pb::RsaPadding,
            _: Box<dyn FnMut(SignEvent) + Send>,
        ) -> Result<Vec<u8>, signer_client::Error> {
            SIGNS.fetch_add(1, Ordering::SeqCst);
            Ok([digest.clone(), digest].concat())
        }
    }

    unsafe extern "C" fn create(_: *mut *mut c_void) -> CK_RV {
        CKR_OK
    }
    unsafe extern "C" fn other(_: *mut c_void) -> CK_RV {
        CKR_OK
    }

    fn args(flags: CK_FLAGS, mutexes: bool) -> CK_C_INITIALIZE_ARGS {
        CK_C_INITIALIZE_ARGS {
            CreateMutex: mutexes.then_some(create as unsafe extern "C" fn(_) -> _),
            DestroyMutex: mutexes.then_some(other as unsafe extern "C" fn(_) -> _),
            LockMutex: mutexes.then_some(other as unsafe extern "C" fn(_) -> _),
            UnlockMutex: mutexes.then_some(other as unsafe extern "C" fn(_) -> _),
            flags,
            pReserved: null_mut(),
        }
    }

    #[test]
    fn the_c_boundary() {
        // SAFETY (whole test): every pointer passed is to a live local of
        // the type the function expects, with the lengths given.
        unsafe {
            // A panic never crosses the boundary.
            assert_eq!(entry("test", || panic!("boom")), CKR_GENERAL_ERROR);

            let mut n: CK_ULONG = 0;
            assert_eq!(
                C_GetSlotList(CK_TRUE, null_mut(), &mut n),
                CKR_CRYPTOKI_NOT_INITIALIZED
            );
            let mut a = args(0, true);
            assert_eq!(C_Initialize(&mut a as *mut _ as *mut c_void), CKR_CANT_LOCK);
            let mut a = args(CKF_LIBRARY_CANT_CREATE_OS_THREADS, false);
            assert_eq!(
                C_Initialize(&mut a as *mut _ as *mut c_void),
                CKR_NEED_TO_CREATE_THREADS
            );
            let mut a = args(CKF_OS_LOCKING_OK, false);
            a.pReserved = &mut n as *mut _ as *mut c_void;
            assert_eq!(
                C_Initialize(&mut a as *mut _ as *mut c_void),
                CKR_ARGUMENTS_BAD
            );
            let mut a = args(CKF_OS_LOCKING_OK, false);
            a.CreateMutex = Some(create);
            assert_eq!(
                C_Initialize(&mut a as *mut _ as *mut c_void),
                CKR_ARGUMENTS_BAD
            );
            // Mutex callbacks with CKF_OS_LOCKING_OK: the module locks itself.
            let mut a = args(CKF_OS_LOCKING_OK, true);
            assert_eq!(C_Initialize(&mut a as *mut _ as *mut c_void), CKR_OK);
            assert_eq!(C_Initialize(null_mut()), CKR_CRYPTOKI_ALREADY_INITIALIZED);
            // Swap in the fake daemon.
            let config = Config {
                touch_prompt: false,
                log: false,
            };
            *state() = Some(Arc::new(Module::new(Box::new(Fake), config)));

            let mut list: *mut CK_FUNCTION_LIST = null_mut();
            assert_eq!(C_GetFunctionList(&mut list), CKR_OK);
            assert_eq!((*list).version.major, 2);
            assert_eq!(C_GetFunctionList(null_mut()), CKR_ARGUMENTS_BAD);

            // The two-call slot list, and a too-small buffer.
            assert_eq!(C_GetSlotList(CK_TRUE, null_mut(), &mut n), CKR_OK);
            assert_eq!(n, 1);
            let mut slots = [99 as CK_SLOT_ID; 2];
            let mut zero: CK_ULONG = 0;
            assert_eq!(
                C_GetSlotList(CK_TRUE, slots.as_mut_ptr(), &mut zero),
                CKR_BUFFER_TOO_SMALL
            );
            assert_eq!(zero, 1);
            n = 2;
            assert_eq!(C_GetSlotList(CK_TRUE, slots.as_mut_ptr(), &mut n), CKR_OK);
            assert_eq!((n, slots[0]), (1, 0));

            let mut info: CK_TOKEN_INFO = std::mem::zeroed();
            assert_eq!(C_GetTokenInfo(0, &mut info), CKR_OK);
            assert_eq!(&info.label[..16], b"YubiKey PIV #42 ");
            assert_eq!(C_GetTokenInfo(7, &mut info), CKR_SLOT_ID_INVALID);

            let mut h: CK_SESSION_HANDLE = 0;
            assert_eq!(
                C_OpenSession(0, CKF_SERIAL_SESSION, null_mut(), None, &mut h),
                CKR_OK
            );
            let mut pin = *b"whatever";
            assert_eq!(C_Login(h, CKU_USER, pin.as_mut_ptr(), 8), CKR_OK);
            assert_eq!(C_Login(h, CKU_SO, null_mut(), 0), CKR_USER_TYPE_INVALID);

            // Find the private key by class.
            let mut class = CKO_PRIVATE_KEY;
            let mut t = [CK_ATTRIBUTE {
                type_: CKA_CLASS,
                pValue: &mut class as *mut _ as *mut c_void,
                ulValueLen: std::mem::size_of::<CK_ULONG>() as CK_ULONG,
            }];
            assert_eq!(C_FindObjectsInit(h, t.as_mut_ptr(), 1), CKR_OK);
            let mut objs = [0 as CK_OBJECT_HANDLE; 4];
            let mut found: CK_ULONG = 0;
            assert_eq!(C_FindObjects(h, objs.as_mut_ptr(), 4, &mut found), CKR_OK);
            assert_eq!(found, 1);
            assert_eq!(C_FindObjectsFinal(h), CKR_OK);
            let key = objs[0];

            // Attribute lengths, a too-small value buffer, a missing one.
            let mut small = [0u8; 2];
            let mut t = [
                CK_ATTRIBUTE {
                    type_: CKA_EC_POINT,
                    pValue: null_mut(),
                    ulValueLen: 0,
                },
                CK_ATTRIBUTE {
                    type_: CKA_EC_PARAMS,
                    pValue: small.as_mut_ptr() as *mut c_void,
                    ulValueLen: 2,
                },
                CK_ATTRIBUTE {
                    type_: CKA_MODULUS,
                    pValue: null_mut(),
                    ulValueLen: 0,
                },
            ];
            let rv = C_GetAttributeValue(h, key, t.as_mut_ptr(), 3);
            assert!(rv == CKR_BUFFER_TOO_SMALL || rv == CKR_ATTRIBUTE_TYPE_INVALID);
            assert_eq!(t[0].ulValueLen, 67, "DER OCTET STRING of 65 bytes");
            assert_eq!(t[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
            assert_eq!(t[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);

            // The length query: null buffer, too small, then the signature;
            // one daemon signature.
            let mut mech = CK_MECHANISM {
                mechanism: CKM_ECDSA,
                pParameter: null_mut(),
                ulParameterLen: 0,
            };
            assert_eq!(C_SignInit(h, &mut mech, key), CKR_OK);
            let mut digest = [7u8; 32];
            let mut len: CK_ULONG = 0;
            assert_eq!(
                C_Sign(h, digest.as_mut_ptr(), 32, null_mut(), &mut len),
                CKR_OK
            );
            assert_eq!(len, 64);
            let mut sig = [0u8; 80];
            len = 10;
            assert_eq!(
                C_Sign(h, digest.as_mut_ptr(), 32, sig.as_mut_ptr(), &mut len),
                CKR_BUFFER_TOO_SMALL
            );
            assert_eq!(len, 64);
            assert_eq!(SIGNS.load(Ordering::SeqCst), 0);
            len = 80;
            assert_eq!(
                C_Sign(h, digest.as_mut_ptr(), 32, sig.as_mut_ptr(), &mut len),
                CKR_OK
            );
            assert_eq!(len, 64);
            assert_eq!(&sig[..32], &[7u8; 32]);
            assert_eq!(SIGNS.load(Ordering::SeqCst), 1);
            assert_eq!(
                C_Sign(h, digest.as_mut_ptr(), 32, sig.as_mut_ptr(), &mut len),
                CKR_OPERATION_NOT_INITIALIZED
            );
            // Multi-part through the C functions.
            mech.mechanism = CKM_ECDSA_SHA256;
            assert_eq!(C_SignInit(h, &mut mech, key), CKR_OK);
            assert_eq!(C_SignUpdate(h, digest.as_mut_ptr(), 32), CKR_OK);
            len = 64;
            assert_eq!(C_SignFinal(h, sig.as_mut_ptr(), &mut len), CKR_OK);
            assert_eq!(SIGNS.load(Ordering::SeqCst), 2);
            // A mechanism with a parameter, a null mechanism, an unsupported
            // function.
            mech.ulParameterLen = 4;
            assert_eq!(C_SignInit(h, &mut mech, key), CKR_MECHANISM_PARAM_INVALID);
            assert_eq!(C_SignInit(h, null_mut(), key), CKR_ARGUMENTS_BAD);
            assert_eq!(
                ((*list).C_GenerateRandom.expect("listed"))(h, sig.as_mut_ptr(), 8),
                CKR_FUNCTION_NOT_SUPPORTED
            );

            assert_eq!(C_CloseSession(h), CKR_OK);
            assert_eq!(C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
            assert_eq!(C_Finalize(null_mut()), CKR_OK);
            assert_eq!(C_Finalize(null_mut()), CKR_CRYPTOKI_NOT_INITIALIZED);
        }
    }
}
