#include "ztunnel/l7/http2_mirror.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "ztunnel/l7/nghttp2_fields.h"

namespace weft::ztunnel::l7 {

struct Http2MirrorRequest::Callbacks {
  static Http2MirrorRequest& M(void* u) { return *static_cast<Http2MirrorRequest*>(u); }

  static int Header(nghttp2_session*, const nghttp2_frame* f, const uint8_t* name, size_t namelen,
                    const uint8_t* value, size_t valuelen, uint8_t, void* u) {
    Http2MirrorRequest& m = M(u);
    if (f->hd.type != NGHTTP2_HEADERS || f->hd.stream_id != m.id_) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    int status = 0;
    if (n == ":status" && absl::SimpleAtoi(absl::string_view(v.data(), v.size()), &status) &&
        status >= 200)
      m.status_ = status;
    return 0;
  }

  static int StreamClose(nghttp2_session*, int32_t id, uint32_t code, void* u) {
    Http2MirrorRequest& m = M(u);
    if (id == m.id_) m.End(/*failed=*/code != NGHTTP2_NO_ERROR && m.status_ == 0);
    return 0;
  }

  // The body, then the trailers (if any) or END_STREAM.
  static ssize_t Read(nghttp2_session* session, int32_t id, uint8_t* buf, size_t len,
                      uint32_t* flags, nghttp2_data_source*, void* u) {
    Http2MirrorRequest& m = M(u);
    const size_t n = std::min(len, m.body_.size() - m.body_off_);
    std::memcpy(buf, m.body_.data() + m.body_off_, n);
    m.body_off_ += n;
    if (m.body_off_ == m.body_.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!m.trailers_.empty()) {
        auto nv = Nv(m.trailers_);
        if (nghttp2_submit_trailer(session, id, nv.data(), nv.size()) == 0)
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      }
      std::string().swap(m.body_);  // sent: not held any longer
      m.body_off_ = 0;
    }
    return static_cast<ssize_t>(n);
  }
};

Http2MirrorRequest::Http2MirrorRequest(const Fields& head, std::string body, const Fields& trailers)
    : body_(std::move(body)), trailers_(trailers) {
  nghttp2_session_callbacks* cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs, Callbacks::Header);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, Callbacks::StreamClose);
  nghttp2_session_client_new(&s_, cbs, this);
  nghttp2_session_callbacks_del(cbs);
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
  nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, settings, 1);
  auto nv = Nv(head);
  nghttp2_data_provider prd{};
  prd.read_callback = Callbacks::Read;
  const bool has_body = !body_.empty() || !trailers_.empty();
  id_ =
      nghttp2_submit_request(s_, nullptr, nv.data(), nv.size(), has_body ? &prd : nullptr, nullptr);
  if (id_ < 0) {
    End(/*failed=*/true);
    return;
  }
  Drain();
}

Http2MirrorRequest::~Http2MirrorRequest() {
  nghttp2_session_del(s_);
}

void Http2MirrorRequest::Drain() {
  for (;;) {
    const uint8_t* d;
    ssize_t n = nghttp2_session_mem_send(s_, &d);
    if (n < 0) {
      failed_ = failed_ || status_ == 0;
      done_ = true;
      return;
    }
    if (n == 0) return;
    out_.append(reinterpret_cast<const char*>(d), static_cast<size_t>(n));
  }
}

std::string Http2MirrorRequest::TakeOutput() {
  Drain();
  return std::move(out_);
}

void Http2MirrorRequest::FromServer(std::string_view in) {
  if (done_) return;
  ssize_t n = nghttp2_session_mem_recv(s_, reinterpret_cast<const uint8_t*>(in.data()), in.size());
  if (n < 0) {
    failed_ = status_ == 0;
    done_ = true;
    return;
  }
  Drain();
  // The server ended the connection for its part (a GOAWAY that took the stream with it).
  if (!done_ && !nghttp2_session_want_read(s_) && !nghttp2_session_want_write(s_))
    End(/*failed=*/status_ == 0);
}

// The exchange is over: a polite GOAWAY, then the caller closes.
void Http2MirrorRequest::End(bool failed) {
  if (done_) return;
  done_ = true;
  failed_ = failed;
  nghttp2_submit_goaway(s_, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
}

}  // namespace weft::ztunnel::l7
