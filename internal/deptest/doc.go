// Package deptest holds the test that keeps meshd's layering: data flows
// one way (socket → decode → verify → room logic → deliver), no package
// reaches back up, and meshctl links only the control API's client.
package deptest
