// Where each layer's process-wide state lives: fixed slices of the zeroed static
// storage the C shim provides (see sg_shim.h for why not Swift globals).  Every
// layer's state struct must be valid when all-zero, and fit in its slice.

import CSlabguardShim

enum GlobalSlice: Int {
    case lifecycle = 0          // HeapLifecycle (init state, fork handling)
    case arena = 1              // PageArena
    case caches = 2             // CacheRegistry
    case threads = 3            // ThreadRegistry
    case defaultHeap = 4        // SizeClassHeap for malloc / sg_alloc
    case debug = 5              // debug layer state (slices 5…15)
    case metadataMappings = 16  // MetadataMappings (slices 16…19)
    case stack = 20             // the stack layer's set-up (StackLayerState)

    static let bytes = 4096

    @inline(__always) var address: UnsafeMutableRawPointer {
        sg_heap_state() + rawValue &* GlobalSlice.bytes
    }

    @inline(__always) func bound<T>(to type: T.Type) -> UnsafeMutablePointer<T> {
        address.assumingMemoryBound(to: type)
    }
}
