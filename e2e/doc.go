// Package e2e is meshd's end-to-end suite: it builds the real meshd and
// meshctl, starts them on hosts made of network namespaces joined by a
// bridge, and checks what people would see. It needs root; unprivileged
// it skips and says why, unless MESHD_E2E=require, which CI sets, turns
// the skip into a failure.
package e2e
