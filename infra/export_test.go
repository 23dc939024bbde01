package infra

// IsTransientErr lets the external tests ask what the reconcile loop asks
// of an error through its Transient method.
func IsTransientErr(err error) bool { return isTransient(err) }
