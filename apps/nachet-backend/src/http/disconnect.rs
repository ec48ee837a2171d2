//! Noticing that a client has gone, so that the work of its request stops.
//!
//! actix-web does not drop a handler's future when the client closes its HTTP/1 connection
//! (actix/actix-web#3462): the work would go on to its end, holding a slot and the models.
//! So the server records each connection's socket when it opens ([`on_connect`]), and a
//! long handler races its work against [`closed`], which looks at the socket a few times a
//! second, without reading from it, for the peer's close. When the client is gone the work's
//! future is dropped: model calls are cancelled, codec jobs not yet started never start
//! (one that has started finishes, holding its codec slot until it is done).

use std::any::Any;
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::dev::Extensions;

/// How often a waiting handler looks at its connection.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// A second handle on a plain TCP connection's socket, taken when it opened; it goes with
/// the connection (actix drops a connection's data with it).
#[derive(Debug)]
struct ConnectionSocket(std::net::TcpStream);

/// `HttpServer::on_connect`: records the connection's socket.
pub fn on_connect(io: &dyn Any, extensions: &mut Extensions) {
    #[cfg(unix)]
    if let Some(stream) = io.downcast_ref::<actix_web::rt::net::TcpStream>() {
        use std::os::fd::AsFd;
        match stream.as_fd().try_clone_to_owned() {
            Ok(socket) => {
                extensions.insert(ConnectionSocket(std::net::TcpStream::from(socket)));
            }
            Err(error) => tracing::warn!(%error, "cannot watch a connection for its close"),
        }
    }
    #[cfg(not(unix))]
    let _ = (io, extensions);
}

/// Resolves once the client of `request` has closed its connection; never before.
pub async fn closed(request: &HttpRequest) {
    let Some(socket) = request.conn_data::<ConnectionSocket>() else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        if peer_closed(&socket.0) {
            return;
        }
    }
}

/// The peer closed (or reset) the connection. A peek reads nothing: bytes waiting (a next
/// request) or none yet (the socket is non-blocking, as the server set it) mean it is open.
fn peer_closed(socket: &std::net::TcpStream) -> bool {
    match socket.peek(&mut [0u8; 1]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ),
    }
}
