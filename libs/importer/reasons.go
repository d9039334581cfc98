package importer

import (
	"errors"
	"strings"

	"github.com/custimport/custimport/libs/csvsource"
	"github.com/custimport/custimport/libs/customer"
)

// columnNames names a customer's fields as the file does: by its header
// ("E-Mail", "First Name"), else by the columns given or guessed ("email",
// "col3"), so that a rejects report speaks of columns the file has.
type columnNames map[string]string // canonical or attribute column -> the file's name

func newColumnNames(l csvsource.Layout) columnNames {
	n := columnNames{}
	for i, col := range l.Columns {
		name := col
		if l.ColumnsFrom == csvsource.ColumnsFromHeader && i < len(l.Header) {
			if h := strings.TrimSpace(l.Header[i]); h != "" {
				name = h
			}
		}
		n[col] = name
	}
	return n
}

// field is the file's name for a customer field.
func (n columnNames) field(fe *customer.FieldError) string {
	if name, ok := n[fe.Field]; ok {
		return name
	}
	if fe.Attribute {
		return fe.Field // a column past the layout: colN
	}
	// A name the file does not have was joined from its parts.
	if fe.Field == customer.FieldName {
		var parts []string
		for _, f := range []string{csvsource.ColumnFirstName, csvsource.ColumnLastName} {
			if name, ok := n[f]; ok {
				parts = append(parts, name)
			}
		}
		if len(parts) > 0 {
			return strings.Join(parts, " + ") + " (joined as the name)"
		}
	}
	return fe.Field
}

// reason is the rejects report's reason for a validation error.
func (n columnNames) reason(err error) string {
	if fe, ok := errors.AsType[*customer.FieldError](err); ok {
		return n.field(fe) + " " + fe.Problem
	}
	return strings.TrimPrefix(err.Error(), customer.ErrInvalid.Error()+": ")
}
