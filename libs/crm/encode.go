package crm

// The generic API's request bodies, written without reflection: a batch is
// a hundred customers, and encoding/json spent more on finding their fields
// than on writing them. The bytes are those json.Marshal writes for the
// same values (Customer's tags, then the key), which a test holds them to.

import (
	"encoding/json"
	"slices"
)

// appendBatch appends the body of POST /customers/batch:
// {"customers":[{<customer>,"idempotency_key":"<key>"},...]}.
func appendBatch(b []byte, reqs []Request) []byte {
	b = append(b, `{"customers":[`...)
	for i, r := range reqs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCustomer(b, r.Customer, &r.Key)
	}
	return append(b, "]}"...)
}

// appendCustomer appends c as a JSON object, empty fields left out; a
// non-nil key is added as idempotency_key, empty or not.
func appendCustomer(b []byte, c Customer, key *string) []byte {
	b = append(b, '{')
	b = appendField(b, "email", c.Email)
	b = appendField(b, "name", c.Name)
	b = appendField(b, "first_name", c.FirstName)
	b = appendField(b, "last_name", c.LastName)
	b = appendField(b, "phone", c.Phone)
	if len(c.Attributes) > 0 {
		b = appendName(b, "attributes")
		b = append(b, '{')
		// Sorted by name, as encoding/json writes a map.
		var buf [16]string
		names := buf[:0]
		for k := range c.Attributes {
			names = append(names, k)
		}
		slices.Sort(names)
		for i, k := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, c.Attributes[k])
		}
		b = append(b, '}')
	}
	if key != nil {
		b = appendName(b, "idempotency_key")
		b = appendString(b, *key)
	}
	return append(b, '}')
}

// appendField appends "name":"v" unless v is empty.
func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	return appendString(appendName(b, name), v)
}

// appendName appends "name": after the object's { or a comma.
func appendName(b []byte, name string) []byte {
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, `":`...)
}

// appendString appends s as a JSON string. Printable ASCII that
// encoding/json leaves alone is copied; any other string (a quote, a
// backslash, <, > or &, a control character, anything past ASCII) is left
// to json.Marshal, so that every escape is its own.
func appendString(b []byte, s string) []byte {
	for i := range len(s) {
		if !plainByte[s[i]] {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainByte marks the bytes appendString copies as they are.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c <= 0x7e; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// batchBodySize guesses the size of a batch body, so that it is written
// into one allocation: the fields' lengths and room for the names.
func batchBodySize(reqs []Request) int {
	n := 32
	for _, r := range reqs {
		c := r.Customer
		n += 128 + len(r.Key) + len(c.Email) + len(c.Name) + len(c.FirstName) + len(c.LastName) + len(c.Phone)
		for k, v := range c.Attributes {
			n += len(k) + len(v) + 6
		}
	}
	return n
}
