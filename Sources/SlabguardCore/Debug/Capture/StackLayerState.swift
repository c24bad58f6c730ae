// The stack layer's process-wide state: the unwinder's, the ELF reader's and the module
// map's mapped state, each set up once (pthread_once) on first use.  It lives in its own
// static region (StateRegion.stackLayer), as every layer's state does (DESIGN.md's map).

import Glibc

struct StackLayerState {
    var unwinderOnce: pthread_once_t = 0
    var unwinder: UnsafeMutablePointer<StackUnwinderState>? = nil
    var elfSymbolsOnce: pthread_once_t = 0
    var elfSymbols: UnsafeMutablePointer<ElfSymbolsState>? = nil
    var moduleMapOnce: pthread_once_t = 0
    var moduleMap: UnsafeMutablePointer<ModuleMapState>? = nil

    @inline(__always) static var shared: UnsafeMutablePointer<StackLayerState> { StateRegion.stackLayer.bound(to: StackLayerState.self) }
}
