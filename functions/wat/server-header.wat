;; A hand-written edge function (viewer-response): marks every response with
;; `x-served-by: edge-wat` and, for HTML, `x-frame-options: DENY`. It shows the raw ABI
;; (sdk/ABI.md) without the SDK: host calls imported from `edge_v1`, data in exported memory.
(module
  (import "edge_v1" "response_set_header" (func $set_header (param i32 i32 i32 i32) (result i32)))
  (import "edge_v1" "response_get_header" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-served-by")       ;; 11 bytes at 0
  (data (i32.const 16) "edge-wat")         ;; 8 bytes at 16
  (data (i32.const 32) "content-type")     ;; 12 bytes at 32
  (data (i32.const 48) "x-frame-options")  ;; 15 bytes at 48
  (data (i32.const 64) "DENY")             ;; 4 bytes at 64
  ;; 128..256: buffer for the content type; 256: its length (u32)
  (func (export "viewer-response") (result i32)
    (drop (call $set_header (i32.const 0) (i32.const 11) (i32.const 16) (i32.const 8)))
    ;; If content-type was read (status 0) and starts with "text/htm", forbid framing.
    (if (i32.eqz (call $get_header (i32.const 32) (i32.const 12) (i32.const 128) (i32.const 128) (i32.const 256)))
      (then
        (if (i64.eq (i64.load (i32.const 128)) (i64.const 0x6d74682f74786574)) ;; "text/htm" little-endian
          (then (drop (call $set_header (i32.const 48) (i32.const 15) (i32.const 64) (i32.const 4)))))))
    (i32.const 0)))
