package reconcile

// DecodeFile decodes a YAML file holding one document (a node config)
// into v strictly, as a routes repository's documents are: an unknown
// field, a duplicate key, a value of the wrong type or a syntax error is
// an Errors naming file, line and field ("gitedge.yaml:3: source.brnch:
// unknown field …"), every unknown field listed. fieldsDoc says where the
// fields are documented, for the unknown-field message.
func DecodeFile(file string, data []byte, v any, fieldsDoc string) error {
	l := &loader{fieldsDoc: fieldsDoc}
	d := &document{file: file, line: 1, data: data}
	l.decodeStrict(d, v, func() string { return "" })
	if errs := l.finish(); len(errs) > 0 {
		return errs
	}
	return nil
}
