package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
)

// sessionCookie holds the page's session: proof that the token was typed.
const sessionCookie = "custimport_session"

// auth checks the API token: Authorization: Bearer <token> for programs, a
// session cookie for the page (which asks for the token once; a browser
// cannot add the header to a page load or to an EventSource). With no token
// configured everything is open, and the service listens on loopback only.
type auth struct {
	token string
}

func (a auth) enabled() bool { return a.token != "" }

// session is the cookie's value: an HMAC of a fixed text under the token,
// so that every instance with the same token accepts it, nothing is kept on
// the server, and a new token ends every session.
func (a auth) session() string {
	m := hmac.New(sha256.New, []byte(a.token))
	m.Write([]byte("custimport web session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// allowed reports whether r carries the token or a session.
func (a auth) allowed(r *http.Request) bool {
	if !a.enabled() {
		return true
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		return ok && strings.EqualFold(scheme, "Bearer") && a.tokenMatches(strings.TrimSpace(tok))
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		return subtle.ConstantTimeCompare([]byte(c.Value), []byte(a.session())) == 1
	}
	return false
}

func (a auth) tokenMatches(tok string) bool {
	// Compared as hashes: the same length whatever was sent.
	x, y := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(a.token))
	return subtle.ConstantTimeCompare(x[:], y[:]) == 1
}

// api answers 401 with a JSON error to requests without the token.
func (a auth) api(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.allowed(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="custimport"`)
			msg := "missing API token: send Authorization: Bearer <WEB_API_TOKEN>"
			if r.Header.Get("Authorization") != "" {
				msg = "wrong API token: send Authorization: Bearer <WEB_API_TOKEN>, the token the service was started with"
			}
			writeError(w, http.StatusUnauthorized, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pages sends a browser without a session to the login page.
func (a auth) pages(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.allowed(r) {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// login is POST /login: the token typed in the form starts a session.
func (s *server) login(w http.ResponseWriter, r *http.Request) {
	next := localPath(r.PostFormValue("next"))
	if s.auth.enabled() && !s.auth.tokenMatches(r.PostFormValue("token")) {
		w.WriteHeader(http.StatusUnauthorized)
		s.page.render(w, r, "login", map[string]any{"Next": next, "Error": "That is not the service's API token (WEB_API_TOKEN)."})
		return
	}
	if s.auth.enabled() {
		// Secure only over TLS: on plain HTTP (loopback, a private network)
		// a Secure cookie would never be sent back.
		http.SetCookie(w, &http.Cookie{ //nolint:gosec // Secure when the request came over TLS
			Name: sessionCookie, Value: s.auth.session(), Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
		})
	}
	http.Redirect(w, r, next, http.StatusSeeOther) //nolint:gosec // localPath keeps it on this site
}

// logout is POST /logout: the session cookie is dropped.
func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}) //nolint:gosec // as at login
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// localPath keeps a redirect target on this site: a path, never a URL or a
// scheme-relative //host, else "/".
func localPath(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(next, "/") ||
		strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}
