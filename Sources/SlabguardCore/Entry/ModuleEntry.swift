// The C shim's dlclose wrapper (CSlabguardPreload/preload.c) calls these around the real
// dlclose, with an address inside the library (its dynamic section): before, the flight
// recorder captures the library's symbols; after, it records the unload if the library
// is gone.  Without a flight recorder both return at once.

@_cdecl("sg_entry_dlclose_before")
public func sg_entry_dlclose_before(_ address: UInt) {
    if FlightRecorder.isRecording { FlightRecorder.libraryClosing(at: address) }
}

@_cdecl("sg_entry_dlclose_after")
public func sg_entry_dlclose_after(_ address: UInt) {
    if FlightRecorder.isRecording { FlightRecorder.libraryClosed(at: address) }
}
