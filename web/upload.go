package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custimport/custimport/libs/csvsource"
)

// httpError is a bad request: its status and what to tell the client.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badUpload(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// createImport is POST /api/v1/imports: the CSV as the body (text/csv) or
// as the file field of a multipart form, options as query or form fields.
// The file is streamed to the upload folder, never held in memory; once it
// is all there and its layout is read, the import goes on in the background
// and the answer is 202 with its id and URL.
func (s *server) createImport(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > s.cfg.MaxUpload {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the upload is %d bytes; this service takes at most %d (--max-upload)", r.ContentLength, s.cfg.MaxUpload))
		return
	}
	mediaType, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	multipartForm := mediaType == "multipart/form-data"
	if !multipartForm && !isCSVType(mediaType) {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send the CSV as the body with Content-Type: text/csv, or as the file field of a multipart/form-data form", r.Header.Get("Content-Type")))
		return
	}
	opts, err := optionsFrom(r.URL.Query().Get)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	name := r.URL.Query().Get("name")

	id := newImportID()
	job := s.runner.paths(id)
	s.runner.hold(id)
	held := true
	defer func() {
		if held {
			s.runner.drop(id)
		}
	}()
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxUpload)
	ctx := r.Context()

	var up *upload
	var uploadErr error
	if multipartForm {
		up, uploadErr = s.receiveMultipart(ctx, body, params["boundary"], id, name, opts, job.File)
	} else {
		if name == "" {
			name = "upload.csv"
		}
		up, uploadErr = s.receive(ctx, body, id, name, opts, job.File)
	}
	if up == nil && uploadErr != nil {
		s.answerUpload(w, r, uploadErr)
		return
	}
	if uploadErr != nil {
		s.abandon(job, uploadErr)
		s.answerUpload(w, r, uploadErr)
		return
	}

	// The import starts; the answer waits for its layout to be read, so
	// that a file without an email column is said at once.
	if err := s.store.startPublishing(context.WithoutCancel(ctx), id, s.cfg.Name, up.size, up.opts); err != nil {
		s.abandon(job, err)
		s.fail(w, r, err)
		return
	}
	job.Options, job.FileName = up.opts, up.name
	held = false // the runner drops it when the import ends
	select {
	case err := <-s.runner.start(job):
		if err != nil {
			s.answerUpload(w, r, err)
			return
		}
	case <-ctx.Done():
		return
	}
	s.logger.Info("import started", "import_id", id, "file", up.name, "bytes", up.size)
	w.Header().Set("Location", "/api/v1/imports/"+id)
	writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "url": "/api/v1/imports/" + id})
}

// answerUpload answers a failed upload or import start with its status.
func (s *server) answerUpload(w http.ResponseWriter, r *http.Request, err error) {
	var ue *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ue):
		writeError(w, ue.status, ue.msg)
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the upload is over %d bytes, the most this service takes (--max-upload)", mbe.Limit))
	case errors.Is(err, errNotImportable):
		// The producer's own words; its --columns is the columns field here.
		writeError(w, http.StatusUnprocessableEntity, strings.TrimPrefix(err.Error(), errNotImportable.Error()+": ")+" (here: the columns field, e.g. ?columns=name,email)")
	case errors.Is(err, errBrokerDown):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		s.fail(w, r, err)
	}
}

// abandon marks an import whose upload or start failed, and removes its
// files.
func (s *server) abandon(job importJob, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	removeImportFiles(job)
	if err := s.store.finishImport(ctx, job.ID, stateFailed, progress{}, cause.Error()); err != nil {
		s.logger.Error("could not record a failed upload", "import_id", job.ID, "error", err)
	}
}

func isCSVType(mediaType string) bool {
	switch mediaType {
	case "text/csv", "application/csv", "text/plain", "application/vnd.ms-excel", "text/tab-separated-values":
		return true
	}
	return false
}

// optionsFrom reads the producer's options from query or form fields.
func optionsFrom(get func(string) string) (importOptions, error) {
	o := importOptions{
		Header: strings.TrimSpace(get("header")), Delimiter: get("delimiter"), Encoding: strings.TrimSpace(get("encoding")),
	}
	for c := range strings.SplitSeq(get("columns"), ",") {
		if c = strings.TrimSpace(c); c != "" {
			o.Columns = append(o.Columns, c)
		}
	}
	return o, o.validate()
}

func (o importOptions) validate() error {
	switch o.Header {
	case "", csvsource.HeaderAuto, csvsource.HeaderYes, csvsource.HeaderNo:
	default:
		return fmt.Errorf("header=%q: want auto, yes or no", o.Header)
	}
	switch o.Encoding {
	case "", csvsource.EncodingAuto, "utf-8", "utf8", "windows-1252", "cp1252", "latin1", "iso-8859-1":
	default:
		return fmt.Errorf("encoding=%q: want auto, utf-8 or windows-1252", o.Encoding)
	}
	if _, err := o.delimiter(); err != nil {
		return err
	}
	return nil
}

func (o importOptions) delimiter() (rune, error) {
	switch o.Delimiter {
	case "":
		return 0, nil
	case ",", ";", "|":
		return rune(o.Delimiter[0]), nil
	case "tab", `\t`, "\t":
		return '\t', nil
	default:
		return 0, fmt.Errorf("delimiter=%q: want , ; | or tab (or nothing, to detect it)", o.Delimiter)
	}
}

// upload is a file received whole.
type upload struct {
	name string
	size int64
	opts importOptions
}

// receive streams a CSV body to path, creating the import first so that
// it shows while uploading. A nil upload with an error means nothing was
// created.
func (s *server) receive(ctx context.Context, body io.Reader, id, name string, opts importOptions, path string) (*upload, error) {
	if err := s.store.createImport(ctx, id, cleanName(name), s.cfg.Name, opts); err != nil {
		return nil, err
	}
	up := &upload{name: cleanName(name), opts: opts}
	n, err := s.save(ctx, body, id, path)
	up.size = n
	return up, err
}

// receiveMultipart reads a multipart form part by part: option fields
// (before or after the file), and the file field streamed to path.
func (s *server) receiveMultipart(ctx context.Context, body io.Reader, boundary, id, name string, opts importOptions, path string) (*upload, error) {
	if boundary == "" {
		return nil, badUpload(http.StatusBadRequest, "multipart/form-data without a boundary")
	}
	mr := multipart.NewReader(body, boundary)
	fields := map[string]string{}
	var up *upload
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return up, s.partError(err)
		}
		field := part.FormName()
		if field != "file" {
			v, err := io.ReadAll(io.LimitReader(part, 64<<10))
			_ = part.Close()
			if err != nil {
				return up, s.partError(err)
			}
			fields[field] = string(v)
			continue
		}
		if up != nil {
			return up, badUpload(http.StatusBadRequest, "more than one file field: upload one file at a time")
		}
		if name == "" {
			name = part.FileName()
		}
		if name == "" {
			name = "upload.csv"
		}
		if err := s.store.createImport(ctx, id, cleanName(name), s.cfg.Name, opts); err != nil {
			return nil, err
		}
		up = &upload{name: cleanName(name), opts: opts}
		up.size, err = s.save(ctx, part, id, path)
		_ = part.Close()
		if err != nil {
			return up, err
		}
	}
	if up == nil {
		return nil, badUpload(http.StatusBadRequest, "the form has no file field: send the CSV as the file field")
	}
	// Form fields win over the query's.
	formOpts, err := optionsFrom(func(k string) string {
		if v, ok := fields[k]; ok {
			return v
		}
		return map[string]string{"header": opts.Header, "delimiter": opts.Delimiter, "encoding": opts.Encoding, "columns": strings.Join(opts.Columns, ",")}[k]
	})
	if err != nil {
		return up, badUpload(http.StatusBadRequest, "%s", err.Error())
	}
	up.opts = formOpts
	return up, nil
}

func (s *server) partError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return badUpload(http.StatusBadRequest, "read the multipart form: %v", err)
}

// sniffLen is how much of an upload is looked at to tell text from binary.
const sniffLen = 8 << 10

// save streams r to path through a buffer of fixed size, recording the
// bytes received every second (the upload's heartbeat). It refuses content
// that is not text, from its first bytes.
func (s *server) save(ctx context.Context, r io.Reader, id, path string) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return 0, fmt.Errorf("create upload folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600) //nolint:gosec // the path is the upload folder and a generated id
	if err != nil {
		return 0, fmt.Errorf("create upload file: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(r, sniffLen)
	head, err := br.Peek(sniffLen)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return 0, uploadReadError(err)
	}
	if len(head) == 0 {
		return 0, badUpload(http.StatusBadRequest, "the upload is empty: send a CSV file")
	}
	if kind, binary := sniffBinary(head); binary {
		return 0, badUpload(http.StatusUnsupportedMediaType, "this is not a CSV file: its content is binary (%s); send the CSV itself, uncompressed", kind)
	}
	var n int64
	last := time.Now()
	buf := make([]byte, 256<<10)
	for {
		m, rerr := br.Read(buf)
		if m > 0 {
			if _, err := f.Write(buf[:m]); err != nil {
				return n, fmt.Errorf("write upload file: %w", err)
			}
			n += int64(m)
			if time.Since(last) >= time.Second {
				last = time.Now()
				if err := s.store.uploaded(ctx, id, n); err != nil {
					return n, err
				}
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return n, uploadReadError(rerr)
		}
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("write upload file: %w", err)
	}
	return n, nil
}

func uploadReadError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return fmt.Errorf("%w: %w", errUploadCut, err)
}

// sniffBinary tells binary content (an archive, a spreadsheet, an image,
// control bytes) from text as http.DetectContentType does. Windows-1252
// text passes.
func sniffBinary(head []byte) (string, bool) {
	ct := http.DetectContentType(head)
	return ct, !strings.HasPrefix(ct, "text/")
}

// cleanName keeps the base name of what the client called the file.
func cleanName(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, `\`, "/"))
	if name == "." || name == "/" || name == "" {
		return "upload.csv"
	}
	if len(name) > 200 {
		name = name[:200]
	}
	return name
}

func rejectsName(fileName string) string {
	return strings.TrimSuffix(fileName, filepath.Ext(fileName)) + ".rejects.csv"
}

func openRejects(path string) (*os.File, error) {
	return os.Open(path) //nolint:gosec // the upload folder and a stored id
}

// errNotImportable wraps what ended an import before it published
// anything, for a reason of the file's (no email column, no layout): 422.
var errNotImportable = errors.New("the file cannot be imported")

// errUploadCut is an upload that ended before its body did.
var errUploadCut = errors.New("the upload was cut off before the end of the file")

func removeImportFiles(job importJob) {
	for _, f := range []string{job.File, job.Rejects, job.Checkpoint} {
		_ = os.Remove(f)
	}
}
