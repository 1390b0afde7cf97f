;; The firmware's demo gear: passes every message through, except one whose bytes contain
;; "loop", on which it spins forever (so that fuel has something to stop). Logs one line
;; per message at debug level. One page of memory, no growth.
(module
  (import "env" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1 1)
  (data (i32.const 16) "firmware gear: message in")
  (global $next (mut i32) (i32.const 1024))
  (func (export "alloc") (param $len i32) (result i32) (local $p i32)
    ;; bump allocator that starts over when it would run out of the page
    (if (i32.gt_u (i32.add (global.get $next) (local.get $len)) (i32.const 65536))
      (then (global.set $next (i32.const 1024))))
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $len)))
    (local.get $p))
  (func (export "free") (param i32 i32))
  (func (export "process") (param $ptr i32) (param $len i32) (result i64) (local $i i32)
    (call $log (i32.const 1) (i32.const 16) (i32.const 25))
    (block $done (loop $scan
      (br_if $done (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $len)))
      (if (i32.eq (i32.load (i32.add (local.get $ptr) (local.get $i))) (i32.const 0x706f6f6c)) ;; "loop"
        (then (loop $spin (br $spin))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len)))))
