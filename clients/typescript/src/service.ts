// ess.v1.GuardService for @grpc/grpc-js, from the descriptors protoc-gen-es generated:
// protobuf-es makes the messages, grpc-js moves them.

import {
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  makeGenericClientConstructor,
  type MethodDefinition,
  type ServiceDefinition,
} from "@grpc/grpc-js";

import { GuardService } from "./gen/ess/v1/guard_pb.js";

export type Method<I extends DescMessage, O extends DescMessage> = DescMethod & {
  input: I;
  output: O;
};

function serializer<T extends DescMessage>(schema: T): (message: MessageShape<T>) => Buffer {
  return (message) => {
    const bytes = toBinary(schema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<T extends DescMessage>(schema: T): (bytes: Buffer) => MessageShape<T> {
  return (bytes) => fromBinary(schema, bytes);
}

/** The grpc-js definition of one method: its path and how its messages are (de)serialized. */
export function methodDefinition<I extends DescMessage, O extends DescMessage>(
  method: Method<I, O>,
): MethodDefinition<MessageShape<I>, MessageShape<O>> {
  const kind = method.methodKind;
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    requestStream: kind === "client_streaming" || kind === "bidi_streaming",
    responseStream: kind === "server_streaming" || kind === "bidi_streaming",
    requestSerialize: serializer(method.input),
    requestDeserialize: deserializer(method.input),
    responseSerialize: serializer(method.output),
    responseDeserialize: deserializer(method.output),
    originalName: method.localName,
  };
}

/** A grpc-js ServiceDefinition of a protobuf-es service, keyed by the methods' local names
 * (checkOrder, checkOrderStream, ...): for `server.addService` and generic clients. */
export function serviceDefinition(service: DescService): ServiceDefinition {
  return Object.fromEntries(
    service.methods.map((method) => [method.localName, methodDefinition(method)]),
  ) as ServiceDefinition;
}

/** ess.v1.GuardService for grpc-js (e.g. a fake sidecar: `server.addService(...)`). */
export const GuardServiceDefinition = serviceDefinition(GuardService);

/** An untyped grpc-js client class of the whole service, for RPCs this library does not wrap. */
export const GuardServiceClient = makeGenericClientConstructor(
  GuardServiceDefinition,
  "GuardService",
);

/** The methods this client calls, typed. */
export const methods = {
  checkOrder: methodDefinition(GuardService.method.checkOrder),
  checkOrderStream: methodDefinition(GuardService.method.checkOrderStream),
  reportMetric: methodDefinition(GuardService.method.reportMetric),
  reportFill: methodDefinition(GuardService.method.reportFill),
  reportOrderUpdate: methodDefinition(GuardService.method.reportOrderUpdate),
  syncPositions: methodDefinition(GuardService.method.syncPositions),
  heartbeat: methodDefinition(GuardService.method.heartbeat),
  trigger: methodDefinition(GuardService.method.trigger),
  getState: methodDefinition(GuardService.method.getState),
} as const;
