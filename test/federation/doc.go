// Package federation tests `persys federation` end to end: real `persys
// dev` clusters (each its own data dir, ports, node id and CA, on the
// local Docker engine) and a federation process in front, driven with the
// real persys and persysctl binaries.
package federation
