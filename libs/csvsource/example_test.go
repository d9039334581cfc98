package csvsource_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/custimport/custimport/libs/csvsource"
)

func Example() {
	// An Excel export: BOM, semicolons, CRLF, a Windows-1252 name and a
	// broken row.
	input := "\ufeffName;E-mail\r\nJos\xe9;jose@example.es\r\n\"Ann\"x;ann@example.com\r\nBob;bob@example.com\r\n"
	r, err := csvsource.NewReader(strings.NewReader(input), csvsource.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Layout())
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if recErr, ok := errors.AsType[*csvsource.RecordError](err); ok {
			fmt.Println("skip:", recErr)
			continue
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		m := r.Map(rec)
		fmt.Printf("row %d bytes %d-%d: %s <%s>\n", rec.Row, rec.Offset, rec.End, m.Name, m.Email)
	}
	// Output:
	// delimiter ';' (detected), header (detected), columns name,email (from the header), encoding auto
	// row 1 bytes 16-38: José <jose@example.es>
	// skip: row 2 (line 3, offset 38): parse error on line 3, column 5: extraneous or missing " in quoted-field
	// row 3 bytes 62-83: Bob <bob@example.com>
}
