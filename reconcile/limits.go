package reconcile

// Limits on what one repository revision may hold. They are far above any
// real site (the loader benchmark's 10,000 routes, 2,000 backends and 500
// VMs in 126 files take 3 MiB) and keep a hostile or broken commit from
// taking a node's memory: a file is never read past MaxFileBytes, and a
// repository past MaxTotalBytes is refused before it is parsed. Each
// refusal is an ordinary located validation error.
const (
	// MaxFileBytes bounds one YAML file (its size is checked before it is
	// read).
	MaxFileBytes = 8 << 20
	// MaxTotalBytes bounds the YAML files of one revision together.
	MaxTotalBytes = 64 << 20
	// MaxFiles bounds the number of YAML files of one revision.
	MaxFiles = 20_000
	// MaxDocumentsPerFile bounds the "---"-separated documents of a file.
	MaxDocumentsPerFile = 10_000
	// MaxHostsPerRoute bounds one Route's spec.hosts.
	MaxHostsPerRoute = 1_000
	// MaxRoutes bounds the Route documents of one revision.
	MaxRoutes = 100_000
	// maxLinkHops bounds the symbolic links followed to resolve one path
	// (Linux's own bound is 40).
	maxLinkHops = 40
	// maxLinkedDirs bounds how deep directory links may nest.
	maxLinkedDirs = 16
)

// limitSet holds the limits one Load applies: the constants above, or
// smaller ones in tests.
type limitSet struct {
	fileBytes, totalBytes, files, docsPerFile, hostsPerRoute, routes int
}

var defaultLimits = limitSet{
	fileBytes:     MaxFileBytes,
	totalBytes:    MaxTotalBytes,
	files:         MaxFiles,
	docsPerFile:   MaxDocumentsPerFile,
	hostsPerRoute: MaxHostsPerRoute,
	routes:        MaxRoutes,
}
