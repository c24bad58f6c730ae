// Where each layer's process-wide state lives: the regions of the C shim's
// `sg_state_layout` (sg_shim.h), one declared layout of zeroed static storage.  The
// C side checks the layout at compile time (_Static_assert); `bound(to:)` checks that
// the Swift type placed in a region fits it — both sizes are constants when this
// is compiled, so the check costs nothing and a type that outgrows its region traps
// at its first use (and in TrustTests.everyStateFitsItsRegion) instead of silently
// overwriting the next region.  Every state type must be valid when all-zero.

import CSlabguardShim

enum StateRegion {
    case lifecycle, arena, cacheRegistry, slabRecords, threadRegistry, magazinePool, defaultHeap
    case debugOptions, debugCapture, debugRecorder, debugAudit, debugTags, debugReports, debugChecks, debugFaults
    case debugLeaks, debugControl, reportScratch, fillPages, transactionLog, mappings, mappingRanges, stackLayer

    @inline(__always) var offset: Int {
        switch self {
        case .lifecycle: return Int(SG_REGION_OFFSET_lifecycle)
        case .arena: return Int(SG_REGION_OFFSET_arena)
        case .cacheRegistry: return Int(SG_REGION_OFFSET_cache_registry)
        case .slabRecords: return Int(SG_REGION_OFFSET_slab_records)
        case .threadRegistry: return Int(SG_REGION_OFFSET_thread_registry)
        case .magazinePool: return Int(SG_REGION_OFFSET_magazine_pool)
        case .defaultHeap: return Int(SG_REGION_OFFSET_default_heap)
        case .debugOptions: return Int(SG_REGION_OFFSET_debug_options)
        case .debugCapture: return Int(SG_REGION_OFFSET_debug_capture)
        case .debugRecorder: return Int(SG_REGION_OFFSET_debug_recorder)
        case .debugAudit: return Int(SG_REGION_OFFSET_debug_audit)
        case .debugTags: return Int(SG_REGION_OFFSET_debug_tags)
        case .debugReports: return Int(SG_REGION_OFFSET_debug_reports)
        case .debugChecks: return Int(SG_REGION_OFFSET_debug_checks)
        case .debugFaults: return Int(SG_REGION_OFFSET_debug_faults)
        case .debugLeaks: return Int(SG_REGION_OFFSET_debug_leaks)
        case .debugControl: return Int(SG_REGION_OFFSET_debug_control)
        case .reportScratch: return Int(SG_REGION_OFFSET_report_scratch)
        case .fillPages: return Int(SG_REGION_OFFSET_fill_pages)
        case .transactionLog: return Int(SG_REGION_OFFSET_transaction_log)
        case .mappings: return Int(SG_REGION_OFFSET_mappings)
        case .mappingRanges: return Int(SG_REGION_OFFSET_mapping_ranges)
        case .stackLayer: return Int(SG_REGION_OFFSET_stack_layer)
        }
    }

    @inline(__always) var bytes: Int {
        switch self {
        case .lifecycle: return Int(SG_REGION_BYTES_lifecycle)
        case .arena: return Int(SG_REGION_BYTES_arena)
        case .cacheRegistry: return Int(SG_REGION_BYTES_cache_registry)
        case .slabRecords: return Int(SG_REGION_BYTES_slab_records)
        case .threadRegistry: return Int(SG_REGION_BYTES_thread_registry)
        case .magazinePool: return Int(SG_REGION_BYTES_magazine_pool)
        case .defaultHeap: return Int(SG_REGION_BYTES_default_heap)
        case .debugOptions: return Int(SG_REGION_BYTES_debug_options)
        case .debugCapture: return Int(SG_REGION_BYTES_debug_capture)
        case .debugRecorder: return Int(SG_REGION_BYTES_debug_recorder)
        case .debugAudit: return Int(SG_REGION_BYTES_debug_audit)
        case .debugTags: return Int(SG_REGION_BYTES_debug_tags)
        case .debugReports: return Int(SG_REGION_BYTES_debug_reports)
        case .debugChecks: return Int(SG_REGION_BYTES_debug_checks)
        case .debugFaults: return Int(SG_REGION_BYTES_debug_faults)
        case .debugLeaks: return Int(SG_REGION_BYTES_debug_leaks)
        case .debugControl: return Int(SG_REGION_BYTES_debug_control)
        case .reportScratch: return Int(SG_REGION_BYTES_report_scratch)
        case .fillPages: return Int(SG_REGION_BYTES_fill_pages)
        case .transactionLog: return Int(SG_REGION_BYTES_transaction_log)
        case .mappings: return Int(SG_REGION_BYTES_mappings)
        case .mappingRanges: return Int(SG_REGION_BYTES_mapping_ranges)
        case .stackLayer: return Int(SG_REGION_BYTES_stack_layer)
        }
    }

    @inline(__always) var address: UnsafeMutableRawPointer { sg_state_base() + offset }

    /// The region as the state type that lives in it.
    @inline(__always) func bound<T>(to type: T.Type) -> UnsafeMutablePointer<T> {
        precondition(MemoryLayout<T>.size <= bytes && MemoryLayout<T>.alignment <= 64, "slabguard: a state type outgrew its region")
        return address.assumingMemoryBound(to: type)
    }
}
