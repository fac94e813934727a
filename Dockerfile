# waxseal container image: build on Debian 12, run from a slim stage.
#   docker build -t waxseal .
#   docker run -p 2525:2525 -v /srv/waxseal:/var/spool/waxseal waxseal
# Mount your own /etc/waxseal/waxseal.conf (and DKIM tables) to configure.
FROM debian:12 AS build
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y \
	-q --no-install-recommends build-essential cmake pkg-config \
	libuv1-dev liburing-dev android-libboringssl-dev libjemalloc-dev \
	libc-ares-dev libcriterion-dev
COPY . /src
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DWAXSEAL_TESTS=OFF \
	&& cmake --build /build -j"$(nproc)" \
	&& cmake --install /build --prefix /usr

FROM debian:12-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y \
	-q --no-install-recommends libuv1 liburing2 android-libboringssl \
	libjemalloc2 libc-ares2 ca-certificates \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/bin/waxseal /usr/bin/waxseal
COPY --from=build /usr/etc/waxseal/waxseal.conf /etc/waxseal/waxseal.conf
# In a container the relay must listen beyond loopback; mynetworks still
# decides who may relay.
RUN sed -i 's/^smtpd_listen = .*/smtpd_listen = 0.0.0.0:2525/' \
	/etc/waxseal/waxseal.conf
EXPOSE 2525
VOLUME /var/spool/waxseal
ENTRYPOINT ["/usr/bin/waxseal"]
CMD ["run", "-c", "/etc/waxseal/waxseal.conf"]
