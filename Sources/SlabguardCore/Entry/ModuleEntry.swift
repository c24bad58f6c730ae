// The C shim's dlclose wrapper (CSlabguardPreload/preload.c) calls these around the real
// dlclose, with an address inside the library (its dynamic section).  Before: the flight
// recorder keeps the library's symbols (and the symbolizer indexes them, so frames in it
// stay named after it is gone).  After, when the library was really unmapped: the
// recorder notes the unload, and with `leaks` the buffers it allocated that
// nothing still references are reported as `leak at unload` (design §8).

import CSlabguardShim

@_cdecl("sg_entry_dlclose_before")
public func sg_entry_dlclose_before(_ address: UInt) {
    guard sg_debug_flags() != 0 || FlightRecorder.isRecording else { return }
    ModuleUnload.closing(at: address)
}

@_cdecl("sg_entry_dlclose_after")
public func sg_entry_dlclose_after(_ address: UInt) {
    guard sg_debug_flags() != 0 || FlightRecorder.isRecording else { return }
    ModuleUnload.closed(at: address)
}

/// After a dlopen whose result does not depend on its caller (preload.c): the module map
/// learns of the library now (its load time), and so does the log's copy of the map.
@_cdecl("sg_entry_dlopen_after")
public func sg_entry_dlopen_after() {
    guard sg_debug_flags() != 0 || FlightRecorder.isRecording else { return }
    ModuleUnload.opened()
}
